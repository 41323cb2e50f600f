/**
 * Bare transport reference for bootstrap: a grpc-js server over mTLS (the mesh's dev PKI)
 * with raw-Buffer (de)serializers and no store. Fetch streams each requested size as
 * <= 1 MiB messages of keystream, with back-pressure. Prints {"port": N}; exits when stdin
 * closes. Argument: JSON {ca, cert, key} file paths.
 */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { keystream } from "../lib/data.js";
import { BARE_FETCH_PATH, BARE_MESSAGE_BYTES, decodeSizes, identity } from "../lib/refs.js";

const cfg = JSON.parse(process.argv[2] ?? "{}") as { ca: string; cert: string; key: string };
const chunk = keystream(2, "grpc-server", BARE_MESSAGE_BYTES);

const service: grpc.ServiceDefinition = {
  fetch: {
    path: BARE_FETCH_PATH,
    requestStream: false,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

/** Resolves on 'drain' or 'cancelled', removing both listeners (no leak across writes). */
function drainOrCancel(call: grpc.ServerWritableStream<Buffer, Buffer>): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off("drain", done);
      call.off("cancelled", done);
      resolve();
    };
    call.once("drain", done);
    call.once("cancelled", done);
  });
}

async function fetch(call: grpc.ServerWritableStream<Buffer, Buffer>): Promise<void> {
  for (const size of decodeSizes(call.request)) {
    for (let sent = 0; sent < size; ) {
      if (call.cancelled) return;
      const k = Math.min(BARE_MESSAGE_BYTES, size - sent);
      sent += k;
      if (!call.write(chunk.subarray(0, k))) await drainOrCancel(call);
    }
  }
  call.end();
}

const server = new grpc.Server();
server.addService(service, {
  fetch: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    fetch(call).catch((e: unknown) => call.destroy(e instanceof Error ? e : new Error(String(e))));
  },
});
const creds = grpc.ServerCredentials.createSsl(readFileSync(cfg.ca), [{ private_key: readFileSync(cfg.key), cert_chain: readFileSync(cfg.cert) }], true);
server.bindAsync("127.0.0.1:0", creds, (err, port) => {
  if (err) {
    process.stderr.write(`grpc-server: ${String(err)}\n`);
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ port }) + "\n");
});
process.stdin.resume();
process.stdin.on("end", () => {
  server.forceShutdown();
  process.exit(0);
});
