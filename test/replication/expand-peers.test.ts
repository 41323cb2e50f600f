import { describe, expect, it } from "vitest";
import { expandPeers } from "../../src/replication/replicator.js";
import { silentLogger } from "../../src/telemetry/logger.js";

describe("expandPeers", () => {
  const fake = async (host: string): Promise<Array<{ address: string; family: number }>> => {
    if (host === "granary-headless.ns.svc") return [{ address: "10.1.0.5", family: 4 }, { address: "10.1.0.6", family: 4 }, { address: "fd00::7", family: 6 }];
    if (host === "one.example") return [{ address: "10.1.0.9", family: 4 }];
    throw new Error(`ENOTFOUND ${host}`);
  };

  it("turns a name with several addresses into several peers that verify the name", async () => {
    expect(await expandPeers(["https://granary-headless.ns.svc:7443"], silentLogger(), fake)).toEqual([
      { address: "https://10.1.0.5:7443", serverName: "granary-headless.ns.svc" },
      { address: "https://10.1.0.6:7443", serverName: "granary-headless.ns.svc" },
      { address: "https://[fd00::7]:7443", serverName: "granary-headless.ns.svc" },
    ]);
  });

  it("keeps IPs, localhost, single-address and unresolvable names as they are", async () => {
    expect(await expandPeers(["https://127.0.0.1:1", "https://localhost:2", "https://one.example:3", "https://nowhere.example:4"], silentLogger(), fake)).toEqual([
      { address: "https://127.0.0.1:1", serverName: undefined },
      { address: "https://localhost:2", serverName: undefined },
      { address: "https://one.example:3", serverName: undefined },
      { address: "https://nowhere.example:4", serverName: undefined },
    ]);
  });
});
