// Child process for store-crash.test.ts: opens a store from transpiled src/store (argv[2]) in
// argv[3] and runs concurrent puts forever, printing one ACK line per resolved put. The parent
// kills it with SIGKILL mid-write; every ACKed put must survive. stdout is a pipe, which Node
// writes synchronously on Linux, so a printed ACK is in the parent's pipe before the next step.
import { createCipheriv, createHash } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [moduleDir, dataDir] = process.argv.slice(2);
const { openStore } = await import(pathToFileURL(join(moduleDir, "store.js")).href);

export function body(n) {
  const size = 1 + ((n * 7919) % 150_000);
  const key = createHash("sha256").update(`crash-${n}`).digest();
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

async function* chunks(bytes) {
  for (let i = 0; i < bytes.length; i += 16_384) yield bytes.subarray(i, i + 16_384);
}

const store = await openStore({ dataDir, nodeId: "crash-child", lanes: 4, segmentMaxBytes: 256 * 1024 });
let next = 0;

async function worker() {
  for (;;) {
    const n = next++;
    const bytes = body(n);
    const kind = n % 4 === 0 ? "kv" : "cas";
    const key = kind === "kv" ? `k/${n}` : n % 2 ? createHash("sha256").update(bytes).digest("hex") : undefined;
    const result = await store.put({ namespace: "crash", kind, key, size: n % 3 ? bytes.length : undefined }, chunks(bytes));
    const m = result.manifest;
    process.stdout.write(`ACK ${n} ${m.kind} ${m.key} ${m.digest} ${m.size}\n`);
  }
}

for (let w = 0; w < 8; w++) {
  worker().catch((error) => {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exit(1);
  });
}
