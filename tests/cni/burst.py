"""Opens TCP connections to one address at a steady rate and records when each was started and
whether it connected, so a test can ask "did every connection started after time T behave?".

Runs in a pod's network namespace: `ip netns exec <pod> python3 burst.py IP PORT`. Prints
`READY` once running, starts a connection every --interval seconds (nonblocking; each one gets
--timeout to complete its handshake), stops starting new ones when a line arrives on stdin (or
stdin closes), waits for the ones in flight and prints one JSON list of [start, ok, why] with
`start` on the system-wide CLOCK_MONOTONIC (Python's time.monotonic(), the same clock in every
namespace). A connection that fails at once (no route or address yet) counts as failed.
"""

import argparse
import errno
import json
import os
import select
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ip")
    ap.add_argument("port", type=int)
    ap.add_argument("--interval", type=float, default=0.002)
    ap.add_argument("--timeout", type=float, default=0.3)
    ap.add_argument("--max-seconds", type=float, default=60)
    a = ap.parse_args()
    family = socket.AF_INET6 if ":" in a.ip else socket.AF_INET
    pending = {}  # fd -> (socket, start)
    results = []
    print("READY", flush=True)
    stdin = sys.stdin.fileno()
    stop = False
    started = time.monotonic()
    next_start = started
    while True:
        now = time.monotonic()
        if not stop and now >= next_start:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            rc = s.connect_ex((a.ip, a.port))
            if rc in (0, errno.EINPROGRESS):
                pending[s.fileno()] = (s, now)
            else:
                results.append([now, False, errno.errorcode.get(rc, str(rc)).lower()])
                s.close()
            next_start = now + a.interval
        for fd, (s, t0) in list(pending.items()):
            if now - t0 > a.timeout:
                results.append([t0, False, "timeout"])
                s.close()
                del pending[fd]
        if stop and not pending:
            break
        wait = max(0.0, min(next_start - now, 0.01)) if not stop else 0.01
        rfds = [] if stop else [stdin]
        r, w, _ = select.select(rfds, list(pending), [], wait)
        if stdin in r:
            os.read(stdin, 4096)
            stop = True
        if now - started > a.max_seconds:
            stop = True
        for fd in w:
            s, t0 = pending.pop(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            results.append([t0, err == 0, "connected" if err == 0 else
                            errno.errorcode.get(err, str(err)).lower()])
            s.close()
    print(json.dumps(sorted(results)), flush=True)


if __name__ == "__main__":
    main()
