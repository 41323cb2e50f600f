/**
 * A raw gRPC client on node:http2 for hostile input: it frames whatever bytes it is given (even
 * lying length prefixes) and reports what came back — the grpc-status, or how the stream or
 * the connection died. Also a small protobuf wire encoder for crafted messages.
 */
import { connect, constants, type ClientHttp2Session, type SecureClientSessionOptions } from "node:http2";

export interface RawOutcome {
  /** grpc-status from trailers (or trailers-only headers); undefined if none came. */
  readonly status: number | undefined;
  readonly message: string;
  /** RST_STREAM code, or the stream/session error, when no status came. */
  readonly failure: string | undefined;
  readonly timedOut: boolean;
  /** HTTP :status of the response (a gRPC client reads 404 as UNIMPLEMENTED). */
  readonly httpStatus?: number | undefined;
}

export function rawSession(url: string, options: SecureClientSessionOptions = {}): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = connect(url, options);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** A gRPC length-prefixed message; `declaredLength` may lie; `flag` 1 claims compression. */
export function grpcFrame(payload: Uint8Array, declaredLength = payload.length, flag = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flag;
  head.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([head, payload]);
}

export function rawCall(session: ClientHttp2Session, path: string, body: Uint8Array, timeoutMs: number, extraHeaders: Record<string, string> = {}): Promise<RawOutcome> {
  return new Promise((resolve) => {
    let status: number | undefined;
    let message = "";
    let httpStatus: number | undefined;
    let settled = false;
    const done = (failure: string | undefined, timedOut = false): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ status, message, failure: status === undefined ? failure : undefined, timedOut, httpStatus });
    };
    let req: ReturnType<ClientHttp2Session["request"]>;
    try {
      req = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        "grpc-timeout": `${timeoutMs}m`,
        ...extraHeaders,
      });
    } catch (e) {
      resolve({ status: undefined, message: "", failure: `request: ${(e as Error).message}`, timedOut: false });
      return;
    }
    const timer = setTimeout(() => {
      req.close(constants.NGHTTP2_CANCEL);
      done("client timeout", true);
    }, timeoutMs + 2000);
    const take = (h: Record<string, unknown>): void => {
      if (h[":status"] !== undefined) httpStatus ??= Number(h[":status"]);
      if (h["grpc-status"] !== undefined) {
        status = Number(h["grpc-status"]);
        message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      }
    };
    req.on("response", take);
    req.on("trailers", take);
    req.on("data", () => {});
    req.on("error", (e: Error) => done(`stream error: ${e.message}`));
    req.on("close", () => done(req.rstCode ? `rst ${req.rstCode}` : "closed without status"));
    req.end(Buffer.from(body));
  });
}

// ---- protobuf wire encoding (enough to craft hostile messages)

export function varint(v: bigint): Buffer {
  const out: number[] = [];
  let x = v < 0n ? v & ((1n << 64n) - 1n) : v;
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n && out.length < 12);
  return Buffer.from(out);
}

export function tag(field: number, wireType: number): Buffer {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

export function lenField(field: number, payload: Uint8Array, declared = payload.length): Buffer {
  return Buffer.concat([tag(field, 2), varint(BigInt(declared)), payload]);
}

export function varintField(field: number, v: bigint): Buffer {
  return Buffer.concat([tag(field, 0), varint(v)]);
}
