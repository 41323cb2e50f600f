/**
 * The replication engine of a node: membership (configured, learned through Hello, persisted,
 * dropped after a long absence), one PeerLink per peer, the shared staging budget, bandwidth
 * limiter and single-flight, and the readiness rule.
 *
 * Readiness rule: the node becomes ready once every peer it knew at start has either been
 * caught up with once (a clean bootstrap pass, or its feed followed up to the head the peer
 * announced in Hello) or has failed its first connection attempt (unreachable). With no
 * peers at all it is ready at once. Peers learned later never hold readiness back, and
 * readiness never goes back on churn (see node/readiness.ts).
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { HelloResponse } from "../gen/granary/replication/v1/replication_pb.js";
import type { ApplyOutcome, Store } from "../store/types.js";
import { errFields, type Logger } from "../telemetry/logger.js";
import type { PeerClientFactory } from "../transport/peer-client.js";
import { DEFAULT_LANES } from "../store/options.js";
import { BandwidthLimiter } from "./bandwidth-limiter.js";
import { BodySlots } from "./body-slots.js";
import { DEFAULT_PEER_LINK_OPTIONS, PeerLink, type PeerLinkOptions } from "./peer-link.js";
import { Repairer, type RepairerOptions } from "./repairer.js";
import { SingleFlight } from "./single-flight.js";
import { StagingBudget } from "./staging-budget.js";

export interface ReplicatorOptions {
  readonly store: Store;
  readonly log: Logger;
  readonly clientFactory: PeerClientFactory;
  /** This node's peer address as others dial it. */
  readonly advertiseAddress: string;
  /** Configured peers (https://HOST:PORT); a DNS name with several addresses is several peers. */
  readonly peers: readonly string[];
  readonly stagingBudgetBytes: number;
  readonly bandwidthBytesPerSecond: number;
  /**
   * Large-body streams open at once, node-wide (body-slots.ts). Default: the store's writer
   * lanes (DEFAULT_LANES): more would only queue bodies in memory waiting for a lane.
   */
  readonly bodySlots?: number;
  /** A learned peer unreachable for longer than this is dropped. Default 1 hour. */
  readonly peerDropAfterMs?: number;
  readonly linkOptions?: Partial<PeerLinkOptions>;
  /** Repair settings (tests shorten the retry). Defaults in repairer.ts. */
  readonly repair?: Partial<Pick<RepairerOptions, "retry" | "maxAttempts" | "maxPending" | "batch">>;
  /** Readiness: called once when the initial catch-up rule holds. */
  readonly onInitialSyncDone: (reason: string) => void;
}

export const DEFAULT_PEER_DROP_AFTER_MS = 3_600_000;
/** At most one staging exhausted/relieved pair of log lines per this interval. */
export const STAGING_LOG_INTERVAL_MS = 30_000;
const LEARNED_KEY = "membership.learned";

interface LinkEntry {
  readonly link: PeerLink;
  readonly learned: boolean;
  readonly createdMs: number;
  readonly initial: boolean;
  synced: boolean;
  /** How the initial sync ended (the phase at readiness time may have moved on since). */
  syncedAs?: "caught-up" | "unreachable";
}

export class Replicator {
  readonly staging: StagingBudget;
  readonly bodySlots: BodySlots;
  readonly bandwidth: BandwidthLimiter;
  readonly flights = new SingleFlight<ApplyOutcome | "missing">();
  /** Fetches bodies this node lost (records that failed a check) again from a peer. */
  readonly repairer: Repairer;
  private readonly links = new Map<string, LinkEntry>();
  private readonly linkOptions: PeerLinkOptions;
  private readyReported = false;
  private closed = false;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly opts: ReplicatorOptions) {
    // Budget exhausted / relieved are transitions an operator must see: a full budget makes
    // fetches wait (by design), which otherwise looks like a slow peer. Under steady pressure
    // the budget fills and drains per body, so episodes are logged at most once per interval
    // (the next line counts the ones in between); granary_staging_waits_total counts them all.
    let lastLoggedMs = -Infinity;
    let logged = false;
    let unlogged = 0;
    this.staging = new StagingBudget(opts.stagingBudgetBytes, (p) => {
      if (p.state === "exhausted") {
        logged = Date.now() - lastLoggedMs >= STAGING_LOG_INTERVAL_MS;
        if (!logged) {
          unlogged++;
          return;
        }
        lastLoggedMs = Date.now();
        opts.log.info(
          { event: "replication.staging_exhausted", budgetBytes: p.budgetBytes, reservedBytes: p.reservedBytes, wantBytes: p.wantBytes, episodesSinceLastLine: unlogged },
          "staging budget full: body fetches wait for reservations to be released",
        );
        unlogged = 0;
      } else if (logged) {
        opts.log.info({ event: "replication.staging_relieved", budgetBytes: p.budgetBytes, waitedMs: p.waitedMs }, `staging budget has room again after ${p.waitedMs} ms of waiting`);
      }
    });
    this.bodySlots = new BodySlots(opts.bodySlots ?? DEFAULT_LANES);
    this.bandwidth = new BandwidthLimiter(opts.bandwidthBytesPerSecond);
    this.linkOptions = { ...DEFAULT_PEER_LINK_OPTIONS, ...opts.linkOptions };
    this.repairer = new Repairer({ store: opts.store, links: () => this.allLinks(), log: opts.log, ...opts.repair });
  }

  async start(): Promise<void> {
    const configured = await expandPeers(this.opts.peers, this.opts.log);
    for (const p of configured) this.addLink(p.address, p.serverName, false, true);
    for (const l of this.opts.store.getMeta<Array<{ address: string }>>(LEARNED_KEY) ?? []) this.addLink(l.address, undefined, true, true);
    this.checkReady();
    const dropAfter = this.opts.peerDropAfterMs ?? DEFAULT_PEER_DROP_AFTER_MS;
    this.sweeper = setInterval(() => this.sweep(dropAfter), Math.min(60_000, Math.max(1000, dropAfter / 4)));
    this.sweeper.unref();
  }

  /** Peer addresses known now (for Hello answers). */
  knownPeers(): string[] {
    return [...this.links.keys()];
  }

  allLinks(): PeerLink[] {
    return [...this.links.values()].map((e) => e.link);
  }

  /** Server side: a node said Hello with its advertised address. */
  learn(address: string, nodeId: string): void {
    if (this.closed || address === this.opts.advertiseAddress || nodeId === this.opts.store.nodeId) return;
    if (this.links.has(address)) return;
    for (const [addr, e] of this.links) {
      if (e.link.stats.nodeId !== nodeId) continue;
      const live = e.link.stats.phase === "following" || e.link.stats.phase === "bootstrapping";
      if (live) return;
      // The node came back at a new address (a restart on another port, a rescheduled pod).
      this.opts.log.info({ event: "membership.moved", nodeId, from: addr, to: address }, `peer ${nodeId} moved from ${addr} to ${address}`);
      this.links.delete(addr);
      void e.link.stop();
    }
    this.opts.log.info({ event: "membership.learned", address, nodeId }, `learned peer ${nodeId} at ${address}`);
    this.addLink(address, undefined, true, false);
    void this.persistLearned();
  }

  private addLink(address: string, serverName: string | undefined, learned: boolean, initial: boolean): void {
    if (this.links.has(address) || address === this.opts.advertiseAddress) return;
    const client = this.opts.clientFactory(address, serverName);
    const link: PeerLink = new PeerLink({
      store: this.opts.store,
      client,
      self: { nodeId: this.opts.store.nodeId, incarnation: this.opts.store.incarnation, advertiseAddress: this.opts.advertiseAddress },
      staging: this.staging,
      bodySlots: this.bodySlots,
      bandwidth: this.bandwidth,
      flights: this.flights,
      log: this.opts.log,
      options: this.linkOptions,
      onHello: (l, hello) => this.onHello(l, hello),
      onInitialSync: (l, how) => this.onInitialSync(l, how),
    });
    this.links.set(address, { link, learned, createdMs: Date.now(), initial, synced: false });
    link.start();
  }

  private onHello(link: PeerLink, hello: HelloResponse): "continue" | "drop" {
    const entry = this.links.get(link.address);
    if (hello.nodeId === this.opts.store.nodeId) {
      this.opts.log.info({ event: "membership.self", address: link.address }, "peer address is this node itself: dropped");
      this.removeLater(link.address);
      return "drop";
    }
    for (const [addr, e] of this.links) {
      if (addr !== link.address && e.link.stats.nodeId === hello.nodeId && e.link.stats.phase !== "stopped" && e.link.stats.phase !== "connecting") {
        this.opts.log.info({ event: "membership.duplicate", address: link.address, same: addr, nodeId: hello.nodeId }, "second address of a known peer: dropped");
        this.removeLater(link.address);
        return "drop";
      }
    }
    for (const p of hello.knownPeers) {
      if (p !== this.opts.advertiseAddress && !this.links.has(p) && /^https:\/\/[^/\s]+:\d+\/?$/.test(p)) {
        this.opts.log.info({ event: "membership.learned", address: p, via: hello.nodeId }, `learned peer ${p} from ${hello.nodeId}`);
        this.addLink(p, undefined, true, false);
        void this.persistLearned();
      }
    }
    if (entry?.learned) void this.persistLearned();
    return "continue";
  }

  private removeLater(address: string): void {
    const e = this.links.get(address);
    if (!e) return;
    e.synced = true;
    this.links.delete(address);
    void this.persistLearned();
    this.checkReady();
  }

  private onInitialSync(link: PeerLink, how: "caught-up" | "unreachable"): void {
    const e = this.links.get(link.address);
    if (!e || e.synced) return;
    e.synced = true;
    e.syncedAs = how;
    this.opts.log.info({ event: "replication.initial_sync", peer: link.address, peerNodeId: link.stats.nodeId, how }, `initial sync with ${link.address}: ${how}`);
    this.checkReady();
  }

  private checkReady(): void {
    if (this.readyReported) return;
    const initial = [...this.links.values()].filter((e) => e.initial);
    if (initial.some((e) => !e.synced)) return;
    this.readyReported = true;
    const unreachable = initial.filter((e) => e.syncedAs === "unreachable").length;
    this.opts.onInitialSyncDone(
      initial.length === 0
        ? "no peers known at start"
        : `caught up with ${initial.length - unreachable} of ${initial.length} peer(s) known at start${unreachable ? ` (${unreachable} unreachable)` : ""}`,
    );
  }

  private sweep(dropAfterMs: number): void {
    const now = Date.now();
    for (const [addr, e] of this.links) {
      if (!e.learned) continue;
      const last = e.link.stats.lastContactMs || e.createdMs;
      const down = e.link.stats.phase === "unreachable" || e.link.stats.phase === "backoff" || e.link.stats.phase === "connecting";
      if (down && now - last > dropAfterMs) {
        this.opts.log.warn({ event: "membership.dropped", address: addr, nodeId: e.link.stats.nodeId, unreachableMs: now - last }, `dropped learned peer ${addr}: unreachable for ${now - last} ms`);
        this.links.delete(addr);
        void e.link.stop();
        void this.persistLearned();
      }
    }
  }

  private async persistLearned(): Promise<void> {
    if (this.closed) return;
    const learned = [...this.links.entries()].filter(([, e]) => e.learned).map(([address, e]) => ({ address, nodeId: e.link.stats.nodeId }));
    try {
      await this.opts.store.putMeta(LEARNED_KEY, learned);
    } catch (e) {
      this.opts.log.warn({ event: "membership.persist_failed", ...errFields(e) }, "could not persist learned peers");
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    // Stopping the links ends a repair round under way.
    const repairs = this.repairer.close();
    await Promise.all([...this.links.values()].map((e) => e.link.stop()));
    await repairs;
  }
}

export type LookupAll = (host: string) => Promise<Array<{ address: string; family: number }>>;

const lookupAll: LookupAll = (host) => lookup(host, { all: true });

/**
 * Expands https://NAME:PORT into one address per resolved IP (a Kubernetes headless Service
 * resolves to every pod); each keeps NAME as the TLS name to verify.
 */
export async function expandPeers(
  peers: readonly string[],
  log: Logger,
  resolve: LookupAll = lookupAll,
): Promise<Array<{ address: string; serverName: string | undefined }>> {
  const out: Array<{ address: string; serverName: string | undefined }> = [];
  for (const p of peers) {
    const u = new URL(p);
    const host = u.hostname.replace(/^\[|\]$/g, "");
    if (isIP(host) || host === "localhost") {
      out.push({ address: `https://${u.host}`, serverName: undefined });
      continue;
    }
    try {
      const addrs = await resolve(host);
      if (addrs.length <= 1) {
        out.push({ address: `https://${u.host}`, serverName: undefined });
      } else {
        for (const a of addrs) out.push({ address: `https://${a.family === 6 ? `[${a.address}]` : a.address}:${u.port}`, serverName: host });
      }
    } catch (e) {
      log.warn({ event: "membership.resolve_failed", peer: p, ...errFields(e) }, `could not resolve ${host}; dialing it by name`);
      out.push({ address: `https://${u.host}`, serverName: undefined });
    }
  }
  return out;
}
