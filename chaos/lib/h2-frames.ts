/**
 * Raw HTTP/2 frames over a plain or TLS socket, for abuse the node:http2 client will not send
 * (resets, floods, lying frames). Enough HPACK to write literal headers (no Huffman, no table).
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
export const T = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const F = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;

export function frame(type: number, flags: number, stream: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

export function settings(pairs: Array<[number, number]>): Buffer {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v >>> 0, i * 6 + 2);
  });
  return frame(T.SETTINGS, 0, 0, p);
}

export function rst(stream: number, code = 8): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(T.RST_STREAM, 0, stream, p);
}

function hpackInt(v: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (v < max) return [first | v];
  const out = [first | max];
  v -= max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, "latin1");
  return Buffer.concat([Buffer.from(hpackInt(b.length, 7, 0)), b]);
}

/** A header block of literal fields without indexing (new names). */
export function headerBlock(headers: Array<[string, string]>): Buffer {
  return Buffer.concat(headers.flatMap(([n, v]) => [Buffer.from([0x00]), hpackString(n), hpackString(v)]));
}

export function grpcRequestHeaders(path: string, authority: string): Array<[string, string]> {
  return [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", authority],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ];
}

export interface RawConn {
  readonly socket: Socket;
  write(b: Buffer): boolean;
  /** Resolves when the server closed the connection or sent GOAWAY: ms since `since`, and how. */
  closed(since: number): Promise<{ afterMs: number; how: string }>;
  /** goaway: the code of the first GOAWAY received. */
  readonly received: { bytes: number; frames: Record<number, number>; goaway: number | undefined };
  destroy(): void;
}

export function rawConnect(port: number, tls?: ConnectionOptions): Promise<RawConn> {
  return new Promise((resolve, reject) => {
    const socket: Socket = tls ? tlsConnect({ host: "127.0.0.1", port, ALPNProtocols: ["h2"], ...tls }) : netConnect(port, "127.0.0.1");
    const received = { bytes: 0, frames: {} as Record<number, number>, goaway: undefined as number | undefined };
    let buf: Buffer = Buffer.alloc(0);
    const waiters: Array<(how: string) => void> = [];
    let ended: string | undefined;
    const end = (how: string): void => {
      if (ended) return;
      ended = how;
      for (const w of waiters.splice(0)) w(how);
    };
    socket.on("data", (d: Buffer) => {
      received.bytes += d.length;
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!;
        received.frames[type] = (received.frames[type] ?? 0) + 1;
        if (type === T.GOAWAY && len >= 8) {
          const code = buf.readUInt32BE(9 + 4);
          received.goaway ??= code;
          end(`GOAWAY code ${code}`);
        }
        buf = buf.subarray(9 + len);
      }
    });
    socket.on("error", () => end("socket error"));
    socket.on("close", () => end("closed"));
    socket.once(tls ? "secureConnect" : "connect", () => {
      socket.write(PREFACE);
      socket.write(settings([]));
      resolve({
        socket,
        write: (b) => (socket.destroyed ? false : socket.write(b)),
        closed: (since) =>
          new Promise((res) => {
            const done = (how: string): void => res({ afterMs: Date.now() - since, how });
            if (ended) done(ended);
            else waiters.push(done);
          }),
        received,
        destroy: () => socket.destroy(),
      });
    });
    socket.once("error", reject);
  });
}
