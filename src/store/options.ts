/**
 * Store option defaults and their validation: the one place that merges StoreOptions with the
 * DEFAULT_* constants and names the bad field.
 */
import { InvalidArgumentError } from "./errors.js";
import type { StoreEvent, StoreOptions } from "./types.js";
import type { Failpoints } from "../util/failpoints.js";

export const DEFAULT_CAPACITY_BYTES = 0;
export const DEFAULT_SEGMENT_MAX_BYTES = 256 * 1024 * 1024;
export const DEFAULT_FEED_MAX_ENTRIES = 1_000_000;
export const DEFAULT_LANES = 4;
/** Smallest segmentMaxBytes accepted; small values are for tests. */
export const MIN_SEGMENT_MAX_BYTES = 1024;
export const MAX_LANES = 64;
/** How often in-memory segment access order is persisted (it is also persisted at close). */
export const LRU_PERSIST_INTERVAL_MS = 60_000;

const NODE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export interface ResolvedStoreOptions {
  readonly dataDir: string;
  readonly nodeId: string | undefined;
  readonly capacityBytes: number;
  readonly segmentMaxBytes: number;
  readonly feedMaxEntries: number;
  readonly lanes: number;
  readonly onEvent: (event: StoreEvent) => void;
  readonly failpoints: Failpoints | undefined;
}

function integerField(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`store option ${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

export function validateNodeId(nodeId: string, field = "nodeId"): void {
  if (typeof nodeId !== "string" || !NODE_ID_RE.test(nodeId)) {
    throw new InvalidArgumentError(
      `${field} ${JSON.stringify(String(nodeId))} is invalid: use 1-128 characters of A-Z, a-z, 0-9, ".", "_", ":" or "-", starting with a letter or digit`,
    );
  }
}

export function resolveStoreOptions(options: StoreOptions): ResolvedStoreOptions {
  if (typeof options.dataDir !== "string" || options.dataDir.length === 0) {
    throw new InvalidArgumentError("store option dataDir must be a non-empty path");
  }
  if (options.nodeId !== undefined) validateNodeId(options.nodeId, "store option nodeId");
  if (options.onEvent !== undefined && typeof options.onEvent !== "function") {
    throw new InvalidArgumentError("store option onEvent must be a function");
  }
  return {
    dataDir: options.dataDir,
    nodeId: options.nodeId,
    capacityBytes: integerField("capacityBytes", options.capacityBytes, DEFAULT_CAPACITY_BYTES, 0, Number.MAX_SAFE_INTEGER),
    segmentMaxBytes: integerField(
      "segmentMaxBytes",
      options.segmentMaxBytes,
      DEFAULT_SEGMENT_MAX_BYTES,
      MIN_SEGMENT_MAX_BYTES,
      Number.MAX_SAFE_INTEGER,
    ),
    feedMaxEntries: integerField("feedMaxEntries", options.feedMaxEntries, DEFAULT_FEED_MAX_ENTRIES, 1, Number.MAX_SAFE_INTEGER),
    lanes: integerField("lanes", options.lanes, DEFAULT_LANES, 1, MAX_LANES),
    onEvent: options.onEvent ?? (() => {}),
    failpoints: options.failpoints,
  };
}
