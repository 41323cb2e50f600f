/**
 * The per-file fixture of in-process mesh tests: a temp root with a PKI made once, `node()` to
 * start a mesh node listing other nodes as peers, every node started in a test closed after it,
 * the root removed at the end. Call at the top level of a test file.
 */
import { afterAll, afterEach, beforeAll } from "vitest";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { makePki, startMeshNode, type MeshNodeOptions, type Pki } from "./mesh.js";
import { tempDir } from "./temp.js";

export interface MeshFixture {
  readonly pki: Pki;
  readonly root: string;
  /** Nodes to close after the current test (node() adds to it). */
  readonly running: GranaryNode[];
  node(name: string, peers?: GranaryNode[], extra?: Partial<MeshNodeOptions>): Promise<GranaryNode>;
  /** A node name unique in this process. */
  uniq(prefix: string): string;
}

export function useMeshFixture(prefix: string): MeshFixture {
  let pki: Pki | undefined;
  let root: string | undefined;
  let cleanupRoot: (() => Promise<void>) | undefined;
  let seq = 0;
  const running: GranaryNode[] = [];

  beforeAll(async () => {
    const t = await tempDir(prefix);
    root = t.path;
    cleanupRoot = t.cleanup;
    pki = await makePki(`${root}/pki`);
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((n) => n.close()));
  });
  afterAll(async () => {
    await cleanupRoot?.();
  });

  const fixture: MeshFixture = {
    get pki() {
      if (!pki) throw new Error("mesh fixture used outside a test");
      return pki;
    },
    get root() {
      if (!root) throw new Error("mesh fixture used outside a test");
      return root;
    },
    running,
    async node(name, peers = [], extra = {}) {
      const n = await startMeshNode({ name, pki: fixture.pki, root: fixture.root, peers: peers.map((p) => p.peerAddress), ...extra });
      running.push(n);
      return n;
    },
    uniq: (p) => `${p}-${++seq}-${process.pid}`,
  };
  return fixture;
}
