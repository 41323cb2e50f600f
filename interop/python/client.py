#!/usr/bin/python3
"""A Python build client of Granary's public ArtifactService, for the interop test.

It talks to a node the way any buf-generated client would (grpcio + protobuf from Debian), so a
wire-level incompatibility (framing, uint64 handling, oneof order, status codes) shows up here
rather than in a user's CI. Run it with Debian's interpreter, /usr/bin/python3: an interpreter
earlier on PATH (pyenv) does not see Debian's python3-grpcio / python3-protobuf.

    /usr/bin/python3 interop/python/client.py --target 127.0.0.1:PORT roundtrip

Generate the stubs first (gitignored): npx buf generate --template buf.gen.python.yaml

Prints one JSON line: {"ok": bool, "checks": {name: {"ok": bool, ...}}, ...}. Exit status 0
only when every check passed, 1 when one failed, 2 when the client could not run at all.
"""

import argparse
import hashlib
import json
import os
import sys
import time

CHUNK_BYTES = 1024 * 1024
# ~3 MiB and deliberately not a multiple of the chunk size, so the last chunk is short.
BODY_BYTES = 3 * CHUNK_BYTES + 12345


def die(message):
    print(json.dumps({"ok": False, "fatal": message}), flush=True)
    print(f"client.py: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def load_modules(gen_dir):
    try:
        import grpc  # noqa: F401  (Debian: python3-grpcio)
        import google.protobuf  # noqa: F401  (Debian: python3-protobuf)
    except ImportError as err:
        die(
            f"cannot import {err.name!r} with {sys.executable}: install Debian's python3-grpcio and "
            "python3-protobuf and run this with /usr/bin/python3"
        )
    if not os.path.isdir(os.path.join(gen_dir, "granary", "artifact", "v1")):
        die(f"no generated code in {gen_dir}: run npx buf generate --template buf.gen.python.yaml")
    sys.path.insert(0, gen_dir)
    try:
        from granary.artifact.v1 import artifact_pb2, artifact_pb2_grpc
    except Exception as err:  # a protobuf runtime / generator mismatch lands here
        die(f"cannot load the generated code from {gen_dir}: {type(err).__name__}: {err}")
    import grpc

    return grpc, artifact_pb2, artifact_pb2_grpc


class Checks:
    """Collects named results; a check that raises is recorded as failed, not fatal."""

    def __init__(self):
        self.results = {}

    def record(self, name, ok, **detail):
        entry = {"ok": bool(ok)}
        entry.update(detail)
        self.results[name] = entry
        return ok

    def run(self, name, fn):
        try:
            fn()
        except Exception as err:  # grpc.RpcError included: keep going, report all
            detail = {"error": f"{type(err).__name__}: {err}"}
            code = getattr(err, "code", None)
            if callable(code):
                detail = {"code": code().name, "details": err.details()}
            self.record(name, False, **detail)

    @property
    def ok(self):
        return bool(self.results) and all(r["ok"] for r in self.results.values())


def roundtrip(args):
    grpc, pb, pb_grpc = load_modules(args.gen_dir)
    ns = args.namespace
    timeout = args.timeout

    channel = grpc.insecure_channel(
        args.target,
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ],
    )
    try:
        grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
    except grpc.FutureTimeoutError:
        die(f"could not connect to {args.target} within {args.connect_timeout}s")
    stub = pb_grpc.ArtifactServiceStub(channel)

    body = os.urandom(BODY_BYTES)
    digest = hashlib.sha256(body).hexdigest()
    absent = hashlib.sha256(os.urandom(32)).hexdigest()
    checks = Checks()

    def put_requests(header, data):
        yield pb.PutRequest(header=header)
        for start in range(0, len(data), CHUNK_BYTES):
            yield pb.PutRequest(chunk=data[start : start + CHUNK_BYTES])

    def get(kind, key, offset=0, limit=0, namespace=ns):
        """Returns (headers, body bytes, message order) of one Get stream."""
        stream = stub.Get(
            pb.GetRequest(namespace=namespace, kind=kind, key=key, offset=offset, limit=limit),
            timeout=timeout,
        )
        headers, parts, order = [], [], []
        for msg in stream:
            which = msg.WhichOneof("msg")
            order.append(which)
            if which == "header":
                headers.append(msg.header)
            elif which == "chunk":
                parts.append(msg.chunk)
        return headers, b"".join(parts), order

    def well_framed(order):
        # Exactly one header, first, then only chunks.
        return len(order) >= 1 and order[0] == "header" and "header" not in order[1:]

    # --- CAS put: header (namespace, KIND_CAS, key = sha256 hex, size) then 1 MiB chunks ------
    def cas_put():
        header = pb.PutHeader(namespace=ns, kind=pb.KIND_CAS, key=digest, size=len(body))
        started = time.monotonic()
        resp = stub.Put(put_requests(header, body), timeout=timeout)
        m = resp.manifest
        checks.record(
            "cas_put",
            m.key == digest and m.digest == digest and m.size == len(body) and m.kind == pb.KIND_CAS
            and m.namespace == ns and m.version > 0 and m.origin != "" and not resp.already_present,
            size=m.size, version=str(m.version), origin=m.origin,
            already_present=resp.already_present, seconds=round(time.monotonic() - started, 3),
        )

    def cas_put_again():
        header = pb.PutHeader(namespace=ns, kind=pb.KIND_CAS, key=digest, size=len(body))
        resp = stub.Put(put_requests(header, body), timeout=timeout)
        checks.record("cas_put_again", resp.already_present and resp.manifest.digest == digest,
                      already_present=resp.already_present)

    # --- Get whole and a range ----------------------------------------------------------------
    def cas_get():
        headers, data, order = get(pb.KIND_CAS, digest)
        h = headers[0] if headers else None
        checks.record(
            "cas_get",
            well_framed(order) and data == body and h.offset == 0 and h.length == len(body)
            and h.manifest.digest == digest and h.manifest.size == len(body),
            bytes=len(data), messages=len(order),
        )

    def cas_get_range():
        # Straddles a 1 MiB boundary on purpose.
        offset, limit = CHUNK_BYTES - 7, CHUNK_BYTES + 100
        headers, data, order = get(pb.KIND_CAS, digest, offset=offset, limit=limit)
        h = headers[0] if headers else None
        checks.record(
            "cas_get_range",
            well_framed(order) and data == body[offset : offset + limit] and h.offset == offset
            and h.length == limit,
            offset=offset, limit=limit, bytes=len(data),
        )

    # --- Stat (present + absent) and FindMissing ----------------------------------------------
    def stat():
        refs = [
            pb.ArtifactRef(namespace=ns, kind=pb.KIND_CAS, key=digest),
            pb.ArtifactRef(namespace=ns, kind=pb.KIND_CAS, key=absent),
        ]
        resp = stub.Stat(pb.StatRequest(refs=refs), timeout=timeout)
        r = list(resp.results)
        checks.record(
            "stat",
            len(r) == 2 and r[0].ref.key == digest and r[0].HasField("manifest")
            and r[0].manifest.size == len(body) and r[0].manifest.digest == digest
            and r[1].ref.key == absent and not r[1].HasField("manifest"),
            results=len(r),
        )

    def find_missing():
        resp = stub.FindMissing(pb.FindMissingRequest(namespace=ns, digests=[digest, absent]), timeout=timeout)
        missing = list(resp.missing_digests)
        checks.record("find_missing", missing == [absent], missing=len(missing))

    # --- KV put / get -------------------------------------------------------------------------
    def kv_roundtrip():
        key = f"interop/kv-{os.urandom(6).hex()}"
        value = json.dumps({"action": key, "exit": 0}).encode()
        resp = stub.Put(put_requests(pb.PutHeader(namespace=ns, kind=pb.KIND_KV, key=key), value), timeout=timeout)
        put_ok = resp.manifest.key == key and resp.manifest.size == len(value) and resp.manifest.kind == pb.KIND_KV
        headers, data, order = get(pb.KIND_KV, key)
        checks.record(
            "kv_roundtrip",
            put_ok and well_framed(order) and data == value
            and headers[0].manifest.digest == hashlib.sha256(value).hexdigest(),
            key=key, bytes=len(data),
        )

    # --- Status codes -------------------------------------------------------------------------
    def expect_code(name, expected, call):
        try:
            call()
        except grpc.RpcError as err:
            checks.record(name, err.code() == expected, code=err.code().name, details=err.details())
            return
        checks.record(name, False, code="OK", details="the call succeeded; an error was expected")

    def bad_namespace():
        expect_code("bad_namespace_invalid_argument", grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: get(pb.KIND_CAS, digest, namespace="Not A Namespace!"))

    def absent_key():
        expect_code("absent_key_not_found", grpc.StatusCode.NOT_FOUND, lambda: get(pb.KIND_CAS, absent))

    for name, fn in [
        ("cas_put", cas_put),
        ("cas_put_again", cas_put_again),
        ("cas_get", cas_get),
        ("cas_get_range", cas_get_range),
        ("stat", stat),
        ("find_missing", find_missing),
        ("kv_roundtrip", kv_roundtrip),
        ("bad_namespace_invalid_argument", bad_namespace),
        ("absent_key_not_found", absent_key),
    ]:
        checks.run(name, fn)
    channel.close()

    print(
        json.dumps(
            {
                "ok": checks.ok,
                "target": args.target,
                "digest": digest,
                "bytes": len(body),
                "grpc": grpc.__version__,
                "checks": checks.results,
            },
            sort_keys=True,
        ),
        flush=True,
    )
    return 0 if checks.ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port of the node's public listener (plaintext)")
    parser.add_argument("--namespace", default="interop")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-RPC deadline, seconds")
    parser.add_argument("--connect-timeout", type=float, default=15.0, help="seconds to wait for the channel")
    parser.add_argument(
        "--gen-dir",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"),
        help="where buf.gen.python.yaml wrote the stubs (default: interop/python/gen)",
    )
    parser.add_argument("command", choices=["roundtrip"])
    args = parser.parse_args()
    return roundtrip(args)


if __name__ == "__main__":
    sys.exit(main())
