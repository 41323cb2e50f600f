/**
 * The ops listener (plain HTTP/1.1, default 127.0.0.1:9464): what operators and their tools
 * read, kept off the gRPC listeners so a scrape or a probe never competes with replication.
 *
 *   GET /metrics      Prometheus text format (ops/metrics.ts)
 *   GET /livez        200 while the process serves HTTP at all
 *   GET /readyz       200 "ready: <why>" or 503 "not ready: <why>" (the readiness latch)
 *   GET /status.json  node status for the page (ops/status-json.ts)
 *   GET /             the status page (HTML + a little JS, polls /status.json)
 *
 * Read-only; no request body is read. It binds loopback by default: metrics name peers and
 * keys of failed artifacts, so exposing it is the operator's choice (--ops-listen 0.0.0.0:9464).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { causeChain } from "../util/cause-chain.js";
import type { NodeMetrics, MetricsSource } from "./metrics.js";
import { statusDocument } from "./status-json.js";
import { STATUS_PAGE_HTML } from "./status-page.js";
import type { RecentEvent } from "../telemetry/recent-events.js";

export const DEFAULT_OPS_PORT = 9464;

export interface OpsReadiness {
  isReady(): boolean;
  reason(): string;
}

export interface OpsServerOptions {
  readonly host: string;
  /** 0 picks a free port (see address()). */
  readonly port: number;
  readonly metrics: NodeMetrics;
  readonly source: MetricsSource;
  readonly readiness: OpsReadiness;
  /** Recent warnings/errors for the page; default none. */
  readonly recentEvents?: () => readonly RecentEvent[];
  /** Told about a request that failed (a collector threw). */
  readonly onError?: (err: unknown, path: string) => void;
}

export interface OpsServer {
  address(): { host: string; port: number };
  /** Stops listening and closes idle and open connections; idempotent. */
  close(): Promise<void>;
}

export class OpsListenError extends Error {
  readonly code = "OPS_LISTEN";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "OpsListenError";
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { "content-type": type, "cache-control": "no-store", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export async function startOpsServer(o: OpsServerOptions): Promise<OpsServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? "/", "http://ops").pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      send(res, 405, "text/plain; charset=utf-8", "method not allowed\n");
      return;
    }
    try {
      switch (path) {
        case "/metrics":
          send(res, 200, o.metrics.contentType, await o.metrics.render());
          return;
        case "/livez":
          send(res, 200, "text/plain; charset=utf-8", "ok\n");
          return;
        case "/readyz": {
          const ready = o.readiness.isReady();
          send(res, ready ? 200 : 503, "text/plain; charset=utf-8", `${ready ? "ready" : "not ready"}: ${o.readiness.reason()}\n`);
          return;
        }
        case "/status.json":
          send(res, 200, "application/json; charset=utf-8", JSON.stringify(statusDocument(o.source, o.recentEvents?.() ?? [])));
          return;
        case "/":
        case "/index.html":
          send(res, 200, "text/html; charset=utf-8", STATUS_PAGE_HTML);
          return;
        default:
          send(res, 404, "text/plain; charset=utf-8", "not found: try /, /metrics, /livez, /readyz, /status.json\n");
      }
    } catch (e) {
      o.onError?.(e, path);
      if (!res.headersSent) send(res, 500, "text/plain; charset=utf-8", `internal error: ${causeChain(e)}\n`);
      else res.destroy();
    }
  };
  const server: Server = createServer((req, res) => void handle(req, res));
  // Probes and scrapes are short; do not let an idle keep-alive connection hold close() up.
  server.keepAliveTimeout = 5_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(o.port, o.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    throw new OpsListenError(`cannot listen on ${o.host}:${o.port} for the ops listener (/metrics, /readyz)`, { cause: e });
  }
  let closing: Promise<void> | undefined;
  return {
    address() {
      const a = server.address() as AddressInfo | null;
      if (!a) throw new OpsListenError("the ops listener is closed");
      return { host: a.address, port: a.port };
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
