/**
 * The deployment files, checked at the schema level (no container engine or cluster runs
 * here): every port, volume, secret, service and metric a file refers to exists where it is
 * referred to, flags are ones `granary serve` knows, and the compose file's ops/OTLP ports line
 * up with Prometheus's targets and Jaeger's collector.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { LIVENESS_SERVICE } from "../../src/api/health-service.js";
import { envName, parseCommand } from "../../src/cli/options.js";
import { SERVE_OPTIONS } from "../../src/cli/serve.js";
import { parseHostPort } from "../../src/node/config.js";
import { METRIC } from "../../src/telemetry/names.js";

const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;
// Parsed YAML/JSON of known shape: index freely, the assertions are the type check.
type Obj = Record<string, any>;

const readYaml = (rel: string): Obj => parseYaml(readFileSync(join(DEPLOY, rel), "utf8"), { merge: true }) as Obj;
const k8sDocs = (): Obj[] =>
  readdirSync(join(DEPLOY, "k8s"))
    .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
    .flatMap((f) => parseAllDocuments(readFileSync(join(DEPLOY, "k8s", f), "utf8")).map((d) => d.toJS() as Obj))
    .filter((d) => d !== null);
const subset = (sel: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(sel).every(([k, v]) => labels[k] === v);
const flagValue = (args: readonly string[], flag: string): string => {
  const a = args.find((x) => x.startsWith(`--${flag}=`));
  if (!a) throw new Error(`--${flag} missing from args`);
  return a.slice(flag.length + 3);
};
const knownMetric = (name: string): boolean => {
  const families = new Set<string>(Object.values(METRIC));
  return families.has(name) || families.has(name.replace(/_(bucket|count|sum)$/, ""));
};
const metricsIn = (expr: string): string[] => [...expr.matchAll(/\bgranary_[a-z0-9_]+/g)].map((m) => m[0]);

describe("Kubernetes manifests (deploy/k8s)", () => {
  const docs = k8sDocs();
  const kinds = (k: string): Obj[] => docs.filter((d) => d["kind"] === k);
  const sts = kinds("StatefulSet")[0]!;
  const pod = sts["spec"]["template"];
  const c = pod["spec"]["containers"][0] as Obj;
  const args = c["args"] as string[];
  const ports = new Map<string, number>((c["ports"] as Obj[]).map((p) => [p["name"] as string, p["containerPort"] as number]));
  const kustomization = readYaml("k8s/kustomization.yaml");

  it("kustomization lists files that exist and generates the mTLS Secret with a certificate per pod", () => {
    for (const r of kustomization["resources"] as string[]) expect(existsSync(join(DEPLOY, "k8s", r)), r).toBe(true);
    const gen = (kustomization["secretGenerator"] as Obj[]).find((g) => g["name"] === "granary-mesh-tls")!;
    const files = (gen["files"] as string[]).map((f) => f.replace(/^certs\//, ""));
    const want = ["ca.pem", ...Array.from({ length: sts["spec"]["replicas"] as number }, (_, i) => [`${sts["metadata"]["name"]}-${i}.pem`, `${sts["metadata"]["name"]}-${i}-key.pem`]).flat()];
    expect(files.sort()).toEqual(want.sort());
    expect(files).not.toContain("ca-key.pem");
    expect(kustomization["generatorOptions"]["disableNameSuffixHash"]).toBe(true);
    expect(readFileSync(join(DEPLOY, "k8s/make-certs.sh"), "utf8")).toContain("certs issue");
  });

  it("a StatefulSet with a volume per pod, a headless Service for discovery, a client Service and a PDB", () => {
    expect(sts["spec"]["volumeClaimTemplates"]).toHaveLength(1);
    const headless = kinds("Service").find((s) => s["metadata"]["name"] === sts["spec"]["serviceName"])!;
    expect(headless, "the StatefulSet's serviceName is a Service").toBeDefined();
    expect(headless["spec"]["clusterIP"]).toBe("None");
    expect(headless["spec"]["publishNotReadyAddresses"]).toBe(true);
    const labels = pod["metadata"]["labels"] as Record<string, string>;
    expect(subset(sts["spec"]["selector"]["matchLabels"], labels)).toBe(true);
    for (const svc of kinds("Service")) {
      expect(subset(svc["spec"]["selector"], labels), `${svc["metadata"]["name"]} selects the pods`).toBe(true);
      for (const p of svc["spec"]["ports"] as Obj[]) {
        const target = p["targetPort"] as string | number;
        if (typeof target === "string") expect(ports.has(target), `${svc["metadata"]["name"]} targetPort ${target}`).toBe(true);
        else expect([...ports.values()]).toContain(target);
      }
    }
    const client = kinds("Service").find((s) => s["spec"]["clusterIP"] !== "None")!;
    expect(client["spec"]["ports"][0]["targetPort"]).toBe("grpc");
    const pdb = kinds("PodDisruptionBudget")[0]!;
    expect(subset(pdb["spec"]["selector"]["matchLabels"], labels)).toBe(true);
    expect(pdb["spec"]["maxUnavailable"]).toBe(1);
    for (const d of docs) if (d["kind"] !== "Namespace") expect(d["metadata"]["namespace"]).toBe(kinds("Namespace")[0]!["metadata"]["name"]);
  });

  it("probes are native gRPC on the public port: readiness on the latch, liveness/startup on the liveness service", () => {
    const grpcPort = ports.get("grpc")!;
    expect(parseHostPort("listen", flagValue(args, "listen")).port).toBe(grpcPort);
    expect(c["readinessProbe"]["grpc"]).toEqual({ port: grpcPort });
    for (const probe of ["livenessProbe", "startupProbe"]) {
      expect(c[probe]["grpc"]).toEqual({ port: grpcPort, service: LIVENESS_SERVICE });
    }
  });

  it("every flag is one `granary serve` knows, every port/path/variable it names exists", () => {
    expect(args[0]).toBe("serve");
    const env = new Map((c["env"] as Obj[]).map((e) => [e["name"] as string, e]));
    for (const a of args.slice(1)) for (const m of a.matchAll(/\$\(([A-Z_]+)\)/g)) expect(env.has(m[1]!), `$(${m[1]}) is defined`).toBe(true);
    const ns = kinds("Namespace")[0]!["metadata"]["name"] as string;
    const expanded = args.slice(1).map((a) => a.replaceAll("$(POD_NAME)", `${sts["metadata"]["name"]}-0`).replaceAll("$(POD_NAMESPACE)", ns));
    const { values } = parseCommand(expanded, SERVE_OPTIONS, {});
    expect(values["data-dir"]).toBe("/var/lib/granary");
    expect(parseHostPort("peer-listen", flagValue(args, "peer-listen")).port).toBe(ports.get("peer"));
    expect(parseHostPort("ops-listen", flagValue(args, "ops-listen")).port).toBe(ports.get("ops"));
    expect(String(ports.get("ops"))).toBe(pod["metadata"]["annotations"]["prometheus.io/port"]);
    // Peers: the headless Service by its cluster DNS name, on its peer port.
    const headless = kinds("Service").find((s) => s["metadata"]["name"] === sts["spec"]["serviceName"])!;
    const peers = new URL((values["peers"] as string[])[0]!);
    expect(peers.hostname).toBe(`${headless["metadata"]["name"]}.${ns}.svc.cluster.local`);
    expect(Number(peers.port)).toBe(headless["spec"]["ports"][0]["port"]);
    expect(new URL(values["advertise-address"] as string).hostname).toBe(`${sts["metadata"]["name"]}-0.${headless["metadata"]["name"]}.${ns}.svc.cluster.local`);
    // Mounts: data on the claim, TLS files inside the Secret's mount.
    const mounts = new Map((c["volumeMounts"] as Obj[]).map((m) => [m["name"] as string, m["mountPath"] as string]));
    const volumes = new Map((pod["spec"]["volumes"] as Obj[]).map((v) => [v["name"] as string, v]));
    const claims = new Set((sts["spec"]["volumeClaimTemplates"] as Obj[]).map((v) => v["metadata"]["name"] as string));
    for (const name of mounts.keys()) expect(volumes.has(name) || claims.has(name), `volume ${name}`).toBe(true);
    expect(mounts.get([...claims][0]!)).toBe(values["data-dir"]);
    const tlsVolume = [...volumes.entries()].find(([, v]) => v["secret"])!;
    expect(tlsVolume[1]["secret"]["secretName"]).toBe("granary-mesh-tls");
    const tlsDir = mounts.get(tlsVolume[0])!;
    const generated = ((kustomization["secretGenerator"] as Obj[])[0]!["files"] as string[]).map((f) => f.replace(/^certs\//, ""));
    for (const flag of ["tls-ca", "tls-cert", "tls-key"]) {
      const path = values[flag] as string;
      expect(path.startsWith(`${tlsDir}/`), `${flag} under ${tlsDir}`).toBe(true);
      expect(generated).toContain(path.slice(tlsDir.length + 1));
    }
  });

  it("graceful termination outlasts the drain; resources are requested and limited", () => {
    const graceMs = Number(flagValue(args, "shutdown-grace-ms"));
    expect(pod["spec"]["terminationGracePeriodSeconds"] * 1000).toBeGreaterThan(graceMs);
    expect(c["resources"]["requests"]["cpu"]).toBeDefined();
    expect(c["resources"]["requests"]["memory"]).toBeDefined();
    expect(c["resources"]["limits"]["memory"]).toBeDefined();
    expect(pod["spec"]["securityContext"]["runAsNonRoot"]).toBe(true);
  });
});

describe("docker-compose.yml, Prometheus, Grafana, Dockerfile (deploy/)", () => {
  const compose = readYaml("docker-compose.yml");
  const services = compose["services"] as Record<string, Obj>;
  const nodes = Object.entries(services).filter(([name]) => /^granary-\d+$/.test(name));
  const envOf = (s: Obj): Record<string, string> => s["environment"] as Record<string, string>;

  it("three nodes; every volume, network, dependency and build file a service names exists", () => {
    expect(nodes).toHaveLength(3);
    const volumes = new Set(Object.keys(compose["volumes"] as Obj));
    const networks = new Set(Object.keys(compose["networks"] as Obj));
    for (const [name, s] of Object.entries(services)) {
      for (const v of (s["volumes"] ?? []) as string[]) {
        const src = v.split(":")[0]!;
        if (src.startsWith(".") || src.startsWith("/")) expect(existsSync(join(DEPLOY, src)), `${name}: ${src}`).toBe(true);
        else expect(volumes.has(src), `${name}: volume ${src}`).toBe(true);
      }
      for (const n of (s["networks"] ?? []) as string[]) expect(networks.has(n), `${name}: network ${n}`).toBe(true);
      const deps = Array.isArray(s["depends_on"]) ? (s["depends_on"] as string[]) : Object.keys((s["depends_on"] ?? {}) as Obj);
      for (const d of deps) expect(services[d], `${name} depends on ${d}`).toBeDefined();
      if (s["build"]) expect(existsSync(join(DEPLOY, s["build"]["context"], s["build"]["dockerfile"]))).toBe(true);
    }
    expect(services["certs"]!["volumes"]).toContain("certs:/certs");
  });

  it("node settings are real `granary serve` settings; certificates are the ones the init service issues; peers are the other nodes", () => {
    const known = new Set(SERVE_OPTIONS.map((o) => envName(o.name)));
    const issued = (services["certs"]!["command"] as string[]).join("\n");
    for (const [name, s] of nodes) {
      const env = envOf(s);
      for (const k of Object.keys(env)) if (k.startsWith("GRANARY_")) expect(known.has(k), `${name}: ${k}`).toBe(true);
      expect(env["GRANARY_NODE_ID"]).toBe(name);
      expect(issued).toMatch(new RegExp(`for n in [^;]*\\b${name}\\b`));
      expect(env["GRANARY_TLS_CERT"]).toBe(`/certs/${name}.pem`);
      expect(env["GRANARY_TLS_KEY"]).toBe(`/certs/${name}-key.pem`);
      expect((s["volumes"] as string[]).some((v) => v.startsWith("certs:/certs"))).toBe(true);
      const peerPort = parseHostPort("peer-listen", env["GRANARY_PEER_LISTEN"]!).port;
      expect(env["GRANARY_ADVERTISE_ADDRESS"]).toBe(`https://${name}:${peerPort}`);
      const peers = env["GRANARY_PEERS"]!.split(",").map((p) => new URL(p));
      expect(peers.map((p) => p.hostname).sort()).toEqual(nodes.map(([n]) => n).filter((n) => n !== name).sort());
      for (const p of peers) expect(Number(p.port)).toBe(peerPort);
      // Data on the image's data dir.
      expect((s["volumes"] as string[]).some((v) => v.endsWith(`:${env["GRANARY_DATA_DIR"]}`))).toBe(true);
      // The SDK's parse of the flags the env gives: run the option table over it.
      expect(() => parseCommand([], SERVE_OPTIONS, env)).not.toThrow();
    }
  });

  it("OTLP goes to Jaeger's collector; Prometheus scrapes every node's ops port; Grafana reads both", () => {
    const jaegerName = "jaeger";
    const jaeger = services[jaegerName]!;
    expect(jaeger["environment"]["COLLECTOR_OTLP_ENABLED"]).toBe("true");
    for (const [, s] of nodes) {
      const otlp = new URL(envOf(s)["OTEL_EXPORTER_OTLP_ENDPOINT"]!);
      expect(otlp.hostname).toBe(jaegerName);
      expect(otlp.port).toBe("4318"); // OTLP/HTTP
      expect(envOf(s)["OTEL_EXPORTER_OTLP_PROTOCOL"]).toBe("http/protobuf");
      expect(jaeger["expose"]).toContain(otlp.port);
    }
    const prom = readYaml("prometheus/prometheus.yml");
    const targets = (prom["scrape_configs"] as Obj[]).flatMap((sc) => (sc["static_configs"] as Obj[]).flatMap((x) => x["targets"] as string[]));
    expect(targets.sort()).toEqual(nodes.map(([n, s]) => `${n}:${parseHostPort("ops-listen", envOf(s)["GRANARY_OPS_LISTEN"]!).port}`).sort());
    // Rule files are mounted where the config looks for them.
    const promMounts = (services["prometheus"]!["volumes"] as string[]).map((v) => v.split(":"));
    for (const rf of prom["rule_files"] as string[]) expect(promMounts.some(([, target]) => target === rf), rf).toBe(true);
    const ds = readYaml("grafana/provisioning/datasources/datasources.yml")["datasources"] as Obj[];
    const promDs = ds.find((d) => d["type"] === "prometheus")!;
    expect(new URL(promDs["url"]).hostname).toBe("prometheus");
    expect(services["prometheus"]!["ports"][0]).toMatch(/:9090$/);
    expect(new URL(ds.find((d) => d["type"] === "jaeger")!["url"]).hostname).toBe(jaegerName);
    const providers = readYaml("grafana/provisioning/dashboards/dashboards.yml")["providers"] as Obj[];
    const grafanaMounts = (services["grafana"]!["volumes"] as string[]).map((v) => v.split(":"));
    for (const p of providers) expect(grafanaMounts.some(([, target]) => target === p["options"]["path"])).toBe(true);
  });

  it("the dashboard and the alerts only use metrics the nodes export", () => {
    const dash = JSON.parse(readFileSync(join(DEPLOY, "grafana/dashboards/granary.json"), "utf8")) as Obj;
    const exprs = (dash["panels"] as Obj[]).flatMap((p) => (p["targets"] as Obj[]).map((t) => t["expr"] as string));
    const rules = (readYaml("prometheus/alerts.yml")["groups"] as Obj[]).flatMap((g) => (g["rules"] as Obj[]).map((r) => r["expr"] as string));
    const used = [...exprs, ...rules].flatMap(metricsIn);
    expect(used.length).toBeGreaterThan(20);
    for (const m of used) expect(knownMetric(m), m).toBe(true);
    for (const p of dash["panels"] as Obj[]) expect(p["datasource"]["uid"]).toBe("prometheus");
  });

  it("the Dockerfile builds on node:20-slim, installs production dependencies only, runs as non-root and exposes the ports it listens on", () => {
    const df = readFileSync(join(DEPLOY, "Dockerfile"), "utf8");
    const from = [...df.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    expect(from.every((f) => f === "node:20-slim")).toBe(true);
    expect(df).toMatch(/npm ci --omit=dev/);
    const user = /^USER (\S+)/m.exec(df)?.[1];
    expect(user && user !== "root" && user !== "0").toBe(true);
    const exposed = new Set(/^EXPOSE (.+)$/m.exec(df)![1]!.split(/\s+/).map(Number));
    for (const v of ["GRANARY_LISTEN", "GRANARY_PEER_LISTEN", "GRANARY_OPS_LISTEN"]) {
      const value = new RegExp(`${v}=(\\S+)`).exec(df)![1]!;
      expect(exposed.has(parseHostPort(v, value).port), v).toBe(true);
    }
    // Everything COPY takes from the context gets past the .dockerignore.
    const ignore = readFileSync(join(DEPLOY, "Dockerfile.dockerignore"), "utf8");
    for (const m of df.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const src of m[1]!.split(/\s+/)) expect(ignore, src).toContain(`!${src}`);
    }
    expect(df).toMatch(/ENTRYPOINT \["node", "\/app\/bin\/granary\.js"\]/);
  });
});
