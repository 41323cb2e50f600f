/**
 * Bare HTTP/2 reference server (no gRPC, no store): h2c on 127.0.0.1, answers GET /bytes/N
 * with N bytes of keystream written in 1 MiB pieces with back-pressure. Large windows and
 * frames on both ends: this is the ceiling of node:http2 on this machine, not a product path.
 * Prints {"port": N} when listening; exits when stdin closes.
 */
import * as http2 from "node:http2";
import { keystream } from "../lib/data.js";
import { H2_BIG_CONNECTION_WINDOW, H2_BIG_SETTINGS } from "../lib/refs.js";

const MiB = 1 << 20;
const chunk = keystream(1, "h2-server", MiB);

async function send(stream: http2.ServerHttp2Stream, n: number): Promise<void> {
  stream.respond({ ":status": 200, "content-type": "application/octet-stream" });
  for (let sent = 0; sent < n && !stream.destroyed; ) {
    const k = Math.min(MiB, n - sent);
    sent += k;
    if (!stream.write(chunk.subarray(0, k))) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          stream.off("drain", done);
          stream.off("close", done);
          resolve();
        };
        stream.once("drain", done);
        stream.once("close", done);
      });
    }
  }
  stream.end();
}

const server = http2.createServer({ settings: H2_BIG_SETTINGS, maxSessionMemory: 1024 });
server.on("session", (s) => s.setLocalWindowSize(H2_BIG_CONNECTION_WINDOW));
server.on("stream", (stream, headers) => {
  const m = /^\/bytes\/(\d+)$/.exec(String(headers[":path"]));
  if (!m) {
    stream.respond({ ":status": 404 });
    stream.end();
    return;
  }
  send(stream, Number(m[1])).catch(() => stream.destroy());
});
server.on("error", (e) => {
  process.stderr.write(`h2-server: ${String(e)}\n`);
  process.exit(1);
});
server.listen(0, "127.0.0.1", () => {
  const addr = server.address();
  process.stdout.write(JSON.stringify({ port: typeof addr === "object" && addr ? addr.port : 0 }) + "\n");
});
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
