/**
 * The status page as a person sees it: headless Chromium (Debian's, driven by playwright-core)
 * opens the ops listener of a real node of a 2-node mTLS mesh — once while it bootstraps (held
 * at one large body by a failpoint, after another body failed once) and once after it caught
 * up — and reads the page: readiness and why, both nodes in the mesh, the peer's phase, the
 * progress bar, the recent warning. Screenshots go to test-artifacts/ (gitignored).
 */
import { mkdirSync } from "node:fs";
import { PassThrough } from "node:stream";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatHostPort } from "../../src/node/config.js";
import type { GranaryNode } from "../../src/node/granary-node.js";
import { createLogger } from "../../src/telemetry/logger.js";
import { RecentEvents } from "../../src/telemetry/recent-events.js";
import { Failpoints } from "../../src/util/failpoints.js";
import { bytes } from "../helpers/data.js";
import { makePki, publicClient, putCas, startMeshNode, waitForArtifacts, waitReady, type Pki } from "../helpers/mesh.js";
import { tempDir } from "../helpers/temp.js";

export const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
const ARTIFACTS = new URL("../../test-artifacts/", import.meta.url).pathname;

let pki: Pki;
let root: string;
let cleanup: () => Promise<void>;
let browser: Browser;
const nodes: GranaryNode[] = [];

beforeAll(async () => {
  const t = await tempDir("granary-status-page-");
  root = t.path;
  cleanup = t.cleanup;
  pki = await makePki(`${root}/pki`);
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

afterAll(async () => {
  await browser?.close();
  await Promise.all(nodes.splice(0).map((n) => n.close()));
  await cleanup?.();
});

const text = async (page: Page, selector: string): Promise<string> => (await page.locator(selector).first().textContent()) ?? "";

describe("status page in headless Chromium", () => {
  it("shows readiness and why, the mesh, per-peer phase and progress, and recent errors; updates live", async () => {
    const fp = new Failpoints();
    const a = await startMeshNode({ name: "page-a", pki, root, hooks: { failpoints: fp, processMetrics: false } });
    nodes.push(a);
    const conn = publicClient(a);
    const digests: string[] = [];
    try {
      for (let i = 0; i < 4; i++) digests.push(await putCas(conn, "page", bytes(40 + i, 3 << 20)));
      for (let i = 0; i < 20; i++) digests.push(await putCas(conn, "page", bytes(60 + i, 50_000)));
    } finally {
      conn.close();
    }
    // Fail one large body once (a warning for the page), hold another until released.
    let failed = false;
    fp.set("peer.read-bodies.chunk", (ctx) => {
      if (ctx["key"] === digests[0] && ctx["offset"] === 0 && !failed) {
        failed = true;
        throw new Error("injected: disk read error on the serving node");
      }
    });
    let held!: () => void;
    const holding = new Promise<void>((r) => (held = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    fp.set("peer.read-bodies.body", async (ctx) => {
      if (ctx["key"] !== digests[3]) return;
      held();
      await released;
    });

    const recent = new RecentEvents();
    const log = createLogger({ level: "info", destination: new PassThrough().resume(), recent });
    const b = await startMeshNode({
      name: "page-b",
      pki,
      root,
      peers: [a.peerAddress],
      log,
      hooks: { recentEvents: recent, processMetrics: false, replication: { retry: { initialMs: 50, maxMs: 100, multiplier: 2, jitter: 0 } } },
      config: { opsListen: "127.0.0.1:0" },
    });
    nodes.push(b);
    await holding;

    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    try {
      await page.goto(`http://${formatHostPort(b.opsAddress!)}/`);
      // While bootstrapping: NOT READY with the reason, the peer in the bootstrapping phase.
      await page.waitForSelector(`#peers tr[data-peer="${a.peerAddress}"] [data-phase="bootstrapping"]`);
      expect(await page.getAttribute("#ready-badge", "data-ready")).toBe("false");
      expect(await text(page, "#ready-badge")).toBe("NOT READY");
      expect(await text(page, "#ready-reason")).toBe("catching up with peers");
      expect(await text(page, "#node-id")).toBe("page-b");
      const row = `#peers tr[data-peer="${a.peerAddress}"]`;
      expect(await text(page, `${row} td:nth-child(1)`)).toContain("page-a");
      expect(await text(page, `${row} td:nth-child(4)`)).toMatch(/artifacts, ETA/);
      await page.screenshot({ path: `${ARTIFACTS}status-page-bootstrapping.png`, fullPage: true });

      release();
      fp.clear("peer.read-bodies.body");
      await waitReady(b);
      await waitForArtifacts(b, "page", digests);

      // Live update, no reload: READY, the peer following, the failed body in recent events.
      await page.waitForSelector('#ready-badge[data-ready="true"]');
      await page.waitForSelector(`${row} [data-phase="following"]`);
      expect(await text(page, "#ready-badge")).toBe("READY");
      expect(await text(page, "#ready-reason")).toMatch(/^caught up with 1 of 1 peer/);
      const legend = await text(page, "#mesh-legend");
      expect(legend).toContain("page-a following");
      expect(await page.locator("#mesh-svg circle").count()).toBe(2);
      expect(await text(page, "#mesh-svg")).toContain("page-b (this node)");
      expect(await text(page, `${row} td:nth-child(4)`)).toBe("done");
      const events = await text(page, "#events");
      expect(events).toContain("replication.body_failed");
      // The serving side keeps internals to itself; the fresh node sees what it was told.
      expect(events).toMatch(/body stream from https:\/\/127\.0\.0\.1:\d+ failed: .*INTERNAL/);
      expect(events).toContain("replication.pass_retry");
      expect(await text(page, "#node-facts")).toMatch(/24 artifacts/);
      await page.screenshot({ path: `${ARTIFACTS}status-page-ready.png`, fullPage: true });
    } finally {
      await page.close();
    }
  });
});
