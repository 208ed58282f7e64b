"""Probes a fixed set of targets continuously from the current network namespace.

Runs inside a source pod: `ip netns exec <pod> python3 stream_prober.py --interval 0.1
--timeout 0.3 < request`. The first stdin line is a JSON list of targets
[{"id": ..., "ip": ..., "proto": "TCP"|"UDP", "port": N}]. Every --interval seconds it starts
one fresh probe per target (a new socket, so a new connection for conntrack), all nonblocking in
one selector loop, and prints one JSON line per finished probe:

    [start, id, ok, why]

`start` is time.monotonic() when the probe began (CLOCK_MONOTONIC, the same clock in every
network namespace, so the test can place each probe on its own timeline). A TCP probe is `ok`
when the handshake completes (the SYN got through and the answer came back); a UDP probe when
the server's echo of its token arrived. Anything else (timeout, refused, unreachable) is not ok.
Prints READY once the targets are read; stops starting probes when another line arrives on stdin
or stdin closes, waits for the probes in flight, prints DONE and exits.
"""

import argparse
import errno
import json
import os
import selectors
import socket
import sys
import time

LINGER_RST = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close sends RST


def errname(code):
    return errno.errorcode.get(code, str(code)).lower()


class Probe:
    def __init__(self, target, now, timeout, seq):
        self.target = target
        self.start = now
        self.deadline = now + timeout
        self.sock = None
        self.phase = None
        self.token = ("%s %d %d\n" % (target["id"], os.getpid(), seq)).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, default=0.3)
    ap.add_argument("--max-seconds", type=float, default=900)
    args = ap.parse_args()
    targets = json.loads(sys.stdin.readline())
    sel = selectors.DefaultSelector()
    stdin = sys.stdin.fileno()
    sel.register(stdin, selectors.EVENT_READ, None)
    out = []
    seq = 0

    def finish(p, ok, why):
        if p.sock is not None:
            try:
                sel.unregister(p.sock)
            except (KeyError, ValueError):
                pass
            p.sock.close()
            p.sock = None
        out.append(json.dumps([round(p.start, 6), p.target["id"], ok, why]))

    def start(t, now):
        nonlocal seq
        seq += 1
        p = Probe(t, now, args.timeout, seq)
        fam = socket.AF_INET6 if ":" in t["ip"] else socket.AF_INET
        try:
            if t["proto"] == "TCP":
                p.sock = socket.socket(fam, socket.SOCK_STREAM)
                p.sock.setblocking(False)
                p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                rc = p.sock.connect_ex((t["ip"], int(t["port"])))
                if rc not in (0, errno.EINPROGRESS):
                    finish(p, False, errname(rc))
                    return None
                p.phase = "connect"
                sel.register(p.sock, selectors.EVENT_WRITE, p)
            else:
                p.sock = socket.socket(fam, socket.SOCK_DGRAM)
                p.sock.setblocking(False)
                p.sock.connect((t["ip"], int(t["port"])))
                p.sock.send(p.token)
                p.phase = "reply"
                sel.register(p.sock, selectors.EVENT_READ, p)
        except OSError as e:
            finish(p, False, errname(e.errno or 0))
            return None
        return p

    def on_event(p):
        try:
            if p.phase == "connect":
                rc = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                finish(p, rc == 0, "connected" if rc == 0 else errname(rc))
                return
            data = p.sock.recv(65536)
            if data == p.token:
                finish(p, True, "echo")
        except BlockingIOError:
            return
        except OSError as e:
            finish(p, False, errname(e.errno or 0))

    print("READY", flush=True)
    pending = []
    began = time.monotonic()
    next_round = began
    stopping = False
    while True:
        now = time.monotonic()
        if not stopping and now >= next_round:
            for t in targets:
                p = start(t, now)
                if p is not None:
                    pending.append(p)
            next_round += args.interval
            if next_round < now:  # fell behind (a loaded machine): do not burst to catch up
                next_round = now + args.interval
        for p in pending:
            if p.sock is not None and now >= p.deadline:
                finish(p, False, "timeout")
        pending = [p for p in pending if p.sock is not None]
        if out:
            sys.stdout.write("\n".join(out) + "\n")
            sys.stdout.flush()
            out = []
        if stopping and not pending:
            break
        if now - began > args.max_seconds:
            stopping = True
        wake = min([p.deadline for p in pending] + ([] if stopping else [next_round]))
        for key, _ in sel.select(max(0.0, wake - time.monotonic())):
            if key.data is None:
                os.read(stdin, 4096)
                sel.unregister(stdin)
                stopping = True
            else:
                on_event(key.data)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
