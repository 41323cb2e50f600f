/** What every measurement task gets: its time budget as a signal, and scratch/log folders. */
export interface TaskContext {
  /** Aborts when the task's time budget is spent. */
  readonly signal: AbortSignal;
  /** Folder for this task's log files. */
  readonly logDir: string;
  log(message: string): void;
}
