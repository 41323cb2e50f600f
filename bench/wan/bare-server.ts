/**
 * The bare transport reference of the WAN lab: bench/servers/grpc-server.ts's service (raw
 * Buffers, no store, mTLS with the mesh's dev PKI) bound to a namespace address instead of
 * loopback. Prints {"port": N}; exits when stdin closes.
 * Argument: JSON {ca, cert, key, host}.
 */
import { once } from "node:events";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { keystream } from "../lib/data.js";
import { BARE_FETCH_PATH, BARE_MESSAGE_BYTES, decodeSizes, identity } from "../lib/refs.js";

const cfg = JSON.parse(process.argv[2] ?? "{}") as { ca: string; cert: string; key: string; host: string };
const chunk = keystream(2, "grpc-server", BARE_MESSAGE_BYTES);

async function fetch(call: grpc.ServerWritableStream<Buffer, Buffer>): Promise<void> {
  for (const size of decodeSizes(call.request)) {
    for (let sent = 0; sent < size; ) {
      if (call.cancelled) return;
      const k = Math.min(BARE_MESSAGE_BYTES, size - sent);
      sent += k;
      if (!call.write(chunk.subarray(0, k))) await Promise.race([once(call, "drain"), once(call, "cancelled")]);
    }
  }
  call.end();
}

const server = new grpc.Server();
server.addService(
  { fetch: { path: BARE_FETCH_PATH, requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
  {
    fetch: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      fetch(call).catch((e: unknown) => call.destroy(e instanceof Error ? e : new Error(String(e))));
    },
  },
);
const creds = grpc.ServerCredentials.createSsl(readFileSync(cfg.ca), [{ private_key: readFileSync(cfg.key), cert_chain: readFileSync(cfg.cert) }], true);
server.bindAsync(`${cfg.host}:0`, creds, (err, port) => {
  if (err) {
    process.stderr.write(`wan bare-server: ${String(err)}\n`);
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ port }) + "\n");
});
process.stdin.resume();
process.stdin.on("end", () => {
  server.forceShutdown();
  process.exit(0);
});
