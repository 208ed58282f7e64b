"""Holds one TCP connection open from the current network namespace and round-trips data on it
on request, so tests can watch an established connection across policy changes.

    ip netns exec <pod> python3 connclient.py IP PORT [--connect-timeout S]

Prints `CONNECTED` (or `FAILED <why>` and exits 1). Then, for every line `TOKEN TIMEOUT` read on
stdin, sends `TOKEN\\n` and prints `OK` when the server echoed it within TIMEOUT seconds,
`TIMEOUT`, or `CLOSED <why>`. Exits at EOF on stdin.
"""

import argparse
import select
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ip")
    ap.add_argument("port", type=int)
    ap.add_argument("--connect-timeout", type=float, default=2.0)
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.ip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(args.connect_timeout)
    try:
        s.connect((args.ip, args.port))
    except OSError as e:
        print("FAILED %s" % (e.strerror or e), flush=True)
        return 1
    print("CONNECTED", flush=True)
    pending = b""  # echo bytes that arrived after an earlier round trip timed out
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        token = parts[0].encode() + b"\n"
        timeout = float(parts[1]) if len(parts) > 1 else 1.0
        try:
            s.sendall(token)
        except OSError as e:
            print("CLOSED %s" % (e.strerror or e), flush=True)
            continue
        deadline = time.monotonic() + timeout
        verdict = "TIMEOUT"
        while True:
            if token in pending:
                pending = pending.split(token, 1)[1]
                verdict = "OK"
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([s], [], [], left)
            if not r:
                break
            try:
                data = s.recv(65536)
            except OSError as e:
                verdict = "CLOSED %s" % (e.strerror or e)
                break
            if not data:
                verdict = "CLOSED eof"
                break
            pending += data
        print(verdict, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
