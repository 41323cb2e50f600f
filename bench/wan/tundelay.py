#!/usr/bin/python3
"""L3 delay line for the WAN lab (bench/wan/netns.ts): creates TUN device NAME in the current
network namespace, holds every packet read from it for DELAY_MS and writes it back, in order.
The router namespace sends forwarded packets into the TUN by policy routing; re-injected
packets take the main table, so each packet passes once per direction (RTT = 2 x DELAY_MS).

Usage: tundelay.py NAME DELAY_MS [MAX_QUEUED_PACKETS]
Prints "ready" once the device exists. A line on stdin holding a number sets a new DELAY_MS
(packets already queued keep their time). Exits when stdin closes (its parent died) or on SIGTERM.
The queue is bounded: past MAX_QUEUED_PACKETS (default 200000) packets are dropped, like a
router's buffer, so memory cannot grow without bound.
"""
import collections
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main() -> int:
    name = sys.argv[1].encode()
    delay = float(sys.argv[2]) / 1000.0
    max_queued = int(sys.argv[3]) if len(sys.argv) > 3 else 200_000
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name, IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    stdin = sys.stdin.fileno()
    q: collections.deque = collections.deque()
    mono = time.monotonic
    dropped = 0
    while True:
        timeout = max(0.0, q[0][0] - mono()) if q else 1.0
        r, _, _ = select.select([fd, stdin], [], [], timeout)
        if stdin in r:
            data = os.read(stdin, 4096)
            if not data:
                return 0
            for line in data.decode(errors="replace").split():
                try:
                    delay = max(0.0, float(line) / 1000.0)
                except ValueError:
                    pass
        if fd in r:
            due = mono() + delay
            for _ in range(4096):
                try:
                    p = os.read(fd, 65535)
                except BlockingIOError:
                    break
                if len(q) < max_queued:
                    q.append((due, p))
                else:
                    dropped += 1
        now = mono()
        while q and q[0][0] <= now:
            try:
                os.write(fd, q.popleft()[1])
            except BlockingIOError:
                pass


if __name__ == "__main__":
    sys.exit(main())
