/**
 * Quick check of the WAN lab's path (as root): builds a 2-host topology, reports the TCP
 * connect RTT and iperf3 goodput, removes everything.
 * Usage: node dist-bench/bench/wan/probe.js [RTT_MS] [RATE_MBIT] [LOSS_PERCENT] [CC]
 */
import { performance } from "node:perf_hooks";
import { iperf3 } from "./refs.js";
import { WanTopology } from "./netns.js";

const [rtt = "50", rate = "200", loss = "0", cc = "bbr"] = process.argv.slice(2);
const topo = await WanTopology.create(2, { rttMs: Number(rtt), rateMbit: Number(rate), lossPercent: Number(loss) });
try {
  const [a, b] = topo.hosts as [typeof topo.hosts[0], typeof topo.hosts[0]];
  const t0 = performance.now();
  const ping = topo.run(b.ns, ["ping", "-c", "3", "-i", "0.2", a.address], 10_000);
  process.stdout.write(`${ping.split("\n").filter((l) => l.startsWith("rtt")).join("")}\n`);
  const r = await iperf3(topo, a, b, { seconds: 5, parallel: 1, cc: cc as "bbr" | "cubic" });
  process.stdout.write(`iperf3 -R 1 flow ${cc}: ${r.mbitPerSecond?.toFixed(1)} Mbit/s, retransmits ${r.retransmits} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
} finally {
  topo.close();
}
