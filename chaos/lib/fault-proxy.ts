/**
 * A TCP fault proxy on 127.0.0.1: forwards every connection to a target and can cut
 * connections for real (TCP RST via resetAndDestroy) once a given number of bytes flowed
 * toward the client, or at once. TLS passes through untouched (it only sees bytes).
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";

export interface FaultProxy {
  readonly port: number;
  setTarget(port: number): void;
  /** Resets the connection(s) carrying the next `bytes` bytes downstream (from now). */
  cutAfter(bytes: number): void;
  /**
   * Closes the connection carrying the next `bytes` bytes downstream with FIN on both sides,
   * dropping what is still queued: what the kernel of a killed peer process sends when nothing
   * was left unread (a kill with unread bytes is a reset: cutAfter).
   */
  closeAfter(bytes: number): void;
  /** Resets every open connection now. */
  cutAll(): number;
  /** Closes every open connection now with FIN on both sides, as closeAfter does. */
  closeAll(): number;
  /**
   * Freezes every open connection now: nothing more is forwarded or read either way, and
   * nothing is closed (a connection that died without telling either end). New ones pass.
   */
  freezeAll(): number;
  /** Refuses (resets) new connections while true. */
  blackhole(on: boolean): void;
  /** connections: forwarded; refused: reset at accept while blackholed (each a dial attempt). */
  readonly stats: { connections: number; refused: number; cuts: number; closes: number; bytesDown: number };
  close(): Promise<void>;
}

export async function startFaultProxy(targetPort = 0): Promise<FaultProxy> {
  let target = targetPort;
  let cutAt: number | undefined;
  let closeAt: number | undefined;
  let refuse = false;
  const pairs = new Set<[Socket, Socket]>();
  /** What closeAll / freezeAll (and closeAfter) do to each open connection. */
  const controls = new WeakMap<[Socket, Socket], { finish: () => void; freeze: () => void }>();
  const stats = { connections: 0, refused: 0, cuts: 0, closes: 0, bytesDown: 0 };
  const reset = (pair: [Socket, Socket]): void => {
    if (!pairs.delete(pair)) return;
    stats.cuts++;
    for (const s of pair) if (!s.destroyed) s.resetAndDestroy();
  };
  const server: Server = createServer((client) => {
    if (refuse || target === 0) {
      stats.refused++;
      client.resetAndDestroy();
      return;
    }
    stats.connections++;
    const upstream = connect(target, "127.0.0.1");
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    let finishing = false; // closed with FIN: let the client side end by itself
    const finish = (): void => {
      if (!pairs.delete(pair)) return;
      stats.closes++;
      finishing = true;
      client.unpipe(upstream);
      client.on("data", () => {}); // read what the client still sends: unread bytes would turn close into RST
      client.end();
      client.setTimeout(10_000, () => client.destroy());
      upstream.destroy();
    };
    const freeze = (): void => {
      client.unpipe(upstream);
      client.pause();
      upstream.pause();
      upstream.removeAllListeners("data");
    };
    controls.set(pair, { finish, freeze });
    const drop = (): void => {
      pairs.delete(pair);
      if (!finishing) client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.pipe(upstream);
    upstream.on("data", (d: Buffer) => {
      stats.bytesDown += d.length;
      if (cutAt !== undefined && stats.bytesDown >= cutAt) {
        cutAt = undefined;
        reset(pair);
        return;
      }
      if (closeAt !== undefined && stats.bytesDown >= closeAt) {
        closeAt = undefined;
        finish();
        return;
      }
      if (!client.write(d)) {
        upstream.pause();
        client.once("drain", () => upstream.resume());
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    setTarget: (p) => (target = p),
    cutAfter: (bytes) => (cutAt = stats.bytesDown + bytes),
    closeAfter: (bytes) => (closeAt = stats.bytesDown + bytes),
    cutAll: () => {
      const n = pairs.size;
      for (const p of [...pairs]) reset(p);
      return n;
    },
    closeAll: () => {
      const n = pairs.size;
      for (const p of [...pairs]) controls.get(p)?.finish();
      return n;
    },
    freezeAll: () => {
      for (const p of pairs) controls.get(p)?.freeze();
      return pairs.size;
    },
    blackhole: (on) => (refuse = on),
    stats,
    close: async () => {
      for (const p of [...pairs]) for (const s of p) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
