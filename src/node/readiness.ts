/**
 * Readiness as a latch: NOT_SERVING until the node's rule says it is ready, then SERVING
 * until shutdown. It never flaps back on peer churn (the incident's nodes sat not-ready for
 * hours; a ready node that drops out on churn is the same failure from the other side).
 */
import type { ReadinessView } from "../api/health-service.js";

export class Readiness implements ReadinessView {
  private ready = false;
  private draining = false;
  private why = "starting";
  private readonly listeners = new Set<() => void>();

  isReady(): boolean {
    return this.ready && !this.draining;
  }

  reason(): string {
    return this.why;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Updates the reason shown while not ready. */
  pending(reason: string): void {
    if (this.ready || this.why === reason) return;
    this.why = reason;
    this.emit();
  }

  /** Latches ready. Later calls are no-ops. */
  markReady(reason: string): boolean {
    if (this.ready) return false;
    this.ready = true;
    this.why = reason;
    this.emit();
    return true;
  }

  /** Shutdown: report NOT_SERVING so load balancers stop sending new work. */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    this.why = "shutting down";
    this.emit();
  }

  private emit(): void {
    for (const l of [...this.listeners]) l();
  }
}
