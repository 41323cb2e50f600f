/**
 * A progress bar on stderr for large transfers, shown only when stderr is a terminal
 * (cli-progress; never in pipes, CI logs or --json output).
 */
import cliProgress from "cli-progress";

const MIN_BYTES_FOR_BAR = 8 << 20;

export class Progress {
  private readonly bar: cliProgress.SingleBar | undefined;
  private value = 0;

  constructor(label: string, totalBytes: number) {
    if (process.stderr.isTTY && totalBytes >= MIN_BYTES_FOR_BAR) {
      this.bar = new cliProgress.SingleBar(
        { format: `${label} [{bar}] {percentage}% | {value}/{total} MiB | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(Math.ceil(totalBytes / 2 ** 20), 0);
    }
  }

  add(bytes: number): void {
    if (!this.bar) return;
    this.value += bytes;
    this.bar.update(Math.floor(this.value / 2 ** 20));
  }

  stop(): void {
    this.bar?.stop();
  }
}
