/**
 * An OTLP/HTTP protobuf trace receiver for tests: a node:http server on port 0 that decodes
 * every POST /v1/traces (ExportTraceServiceRequest, opentelemetry-proto) into plain spans.
 * The decoder reads just the fields the tests look at, with @bufbuild/protobuf's wire reader;
 * everything else is skipped by wire type.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import { BinaryReader, type WireType } from "@bufbuild/protobuf/wire";

export type AttrValue = string | number | boolean | bigint | null;

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** "" for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** 1 internal, 2 server, 3 client (OTLP SpanKind). */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, AttrValue>>;
  /** 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
  readonly statusMessage: string;
  readonly links: ReadonlyArray<{ traceId: string; spanId: string }>;
  readonly events: readonly string[];
  readonly resource: Readonly<Record<string, AttrValue>>;
  readonly scope: string;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** Calls `on(field, wireType, reader)` for each field of the message in `bytes`. */
function fields(bytes: Uint8Array, on: (no: number, wt: WireType, r: BinaryReader) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (!on(no, wt, r)) r.skip(wt, no);
  }
}

function anyValue(bytes: Uint8Array): AttrValue {
  let v: AttrValue = null;
  fields(bytes, (no, _wt, r) => {
    if (no === 1) v = r.string();
    else if (no === 2) v = r.bool();
    else if (no === 3) v = Number(r.int64());
    else if (no === 4) v = r.double();
    else return false;
    return true;
  });
  return v;
}

function keyValue(bytes: Uint8Array, into: Record<string, AttrValue>): void {
  let key = "";
  let value: AttrValue = null;
  fields(bytes, (no, _wt, r) => {
    if (no === 1) key = r.string();
    else if (no === 2) value = anyValue(r.bytes());
    else return false;
    return true;
  });
  into[key] = value;
}

function span(bytes: Uint8Array, resource: Record<string, AttrValue>, scope: string): ReceivedSpan {
  const s = { traceId: "", spanId: "", parentSpanId: "", name: "", kind: 0, attributes: {} as Record<string, AttrValue>, statusCode: 0, statusMessage: "", links: [] as Array<{ traceId: string; spanId: string }>, events: [] as string[] };
  fields(bytes, (no, _wt, r) => {
    switch (no) {
      case 1:
        s.traceId = hex(r.bytes());
        return true;
      case 2:
        s.spanId = hex(r.bytes());
        return true;
      case 4:
        s.parentSpanId = hex(r.bytes());
        return true;
      case 5:
        s.name = r.string();
        return true;
      case 6:
        s.kind = r.int32();
        return true;
      case 9:
        keyValue(r.bytes(), s.attributes);
        return true;
      case 11:
        fields(r.bytes(), (eno, _ewt, er) => {
          if (eno !== 2) return false;
          s.events.push(er.string());
          return true;
        });
        return true;
      case 13: {
        const link = { traceId: "", spanId: "" };
        fields(r.bytes(), (lno, _lwt, lr) => {
          if (lno === 1) link.traceId = hex(lr.bytes());
          else if (lno === 2) link.spanId = hex(lr.bytes());
          else return false;
          return true;
        });
        s.links.push(link);
        return true;
      }
      case 15:
        fields(r.bytes(), (sno, _swt, sr) => {
          if (sno === 2) s.statusMessage = sr.string();
          else if (sno === 3) s.statusCode = sr.int32();
          else return false;
          return true;
        });
        return true;
      default:
        return false;
    }
  });
  return { ...s, resource, scope };
}

/** Decodes an ExportTraceServiceRequest. */
export function decodeExportTraceRequest(bytes: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  fields(bytes, (no, _wt, r) => {
    if (no !== 1) return false;
    const resource: Record<string, AttrValue> = {};
    const scopeSpans: Uint8Array[] = [];
    fields(r.bytes(), (rno, _rwt, rr) => {
      if (rno === 1) {
        fields(rr.bytes(), (ano, _awt, ar) => {
          if (ano !== 1) return false;
          keyValue(ar.bytes(), resource);
          return true;
        });
      } else if (rno === 2) scopeSpans.push(rr.bytes());
      else return false;
      return true;
    });
    for (const ss of scopeSpans) {
      let scope = "";
      const spans: Uint8Array[] = [];
      fields(ss, (sno, _swt, sr) => {
        if (sno === 1) {
          fields(sr.bytes(), (ino, _iwt, ir) => {
            if (ino !== 1) return false;
            scope = ir.string();
            return true;
          });
        } else if (sno === 2) spans.push(sr.bytes());
        else return false;
        return true;
      });
      for (const sp of spans) out.push(span(sp, resource, scope));
    }
    return true;
  });
  return out;
}

export interface OtlpReceiver {
  /** http://127.0.0.1:PORT (set OTEL_EXPORTER_OTLP_ENDPOINT to this). */
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  /** Requests that were not POST /v1/traces with a protobuf body. */
  readonly rejected: string[];
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const rejected: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/traces" || req.headers["content-type"] !== "application/x-protobuf") {
        rejected.push(`${req.method} ${req.url} ${req.headers["content-type"]}`);
        res.writeHead(404).end();
        return;
      }
      let body = Buffer.concat(chunks);
      if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
      try {
        spans.push(...decodeExportTraceRequest(body));
      } catch (e) {
        rejected.push(`undecodable body: ${String(e)}`);
        res.writeHead(400).end();
        return;
      }
      // An empty ExportTraceServiceResponse.
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    rejected,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
