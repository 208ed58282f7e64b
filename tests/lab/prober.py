"""Probes many (address, protocol, port) targets at once from the current network namespace.

The lab runs it inside a source pod: `ip netns exec <pod> python3 prober.py < request.json`.

Request (stdin, JSON):
  {"timeout": 1.0, "targets": [{"id": "x/a>y/b", "ip": "10.244.1.3", "proto": "TCP", "port": 80}]}
Response (stdout, JSON): a list in request order of
  {"id": ..., "ok": true|false, "why": "echo"|"timeout"|"refused"|..., "ms": 1.23}

A target is reachable (`ok`) only when a reply came back: TCP connects and the server echoes a
token; UDP gets its token echoed (one retransmission at half the timeout). Every socket is
nonblocking and all targets share one selector loop, so N targets that are all dropped take one
timeout, not N.
"""

import errno
import json
import os
import selectors
import socket
import sys
import time


def errname(code):
    return errno.errorcode.get(code, str(code)).lower()


class Probe:
    def __init__(self, spec, now, timeout):
        self.spec = spec
        self.id = spec.get("id")
        self.proto = spec["proto"].upper()
        self.start = now
        self.deadline = now + timeout
        self.resend_at = now + timeout / 2.0
        self.resent = False
        self.done = False
        self.ok = False
        self.why = "timeout"
        self.end = None
        self.token = ("probe %s %d\n" % (self.id, os.getpid())).encode()
        self.got = b""
        self.sock = None
        self.phase = None

    def finish(self, ok, why, now):
        self.done, self.ok, self.why, self.end = True, ok, why, now
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def result(self):
        end = self.end if self.end is not None else self.deadline
        return {"id": self.id, "ok": self.ok, "why": self.why,
                "ms": round((end - self.start) * 1000.0, 2)}


def family_of(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def start(sel, p, now):
    ip, port = p.spec["ip"], int(p.spec["port"])
    if p.proto not in ("TCP", "UDP"):
        p.finish(False, "unsupported-protocol", now)
        return
    kind = socket.SOCK_STREAM if p.proto == "TCP" else socket.SOCK_DGRAM
    try:
        p.sock = socket.socket(family_of(ip), kind)
        p.sock.setblocking(False)
        if p.proto == "TCP":
            p.phase = "connect"
            rc = p.sock.connect_ex((ip, port))
            if rc not in (0, errno.EINPROGRESS):
                p.finish(False, errname(rc), now)
                return
            sel.register(p.sock, selectors.EVENT_WRITE, p)
        else:
            p.phase = "reply"
            p.sock.connect((ip, port))
            p.sock.send(p.token)
            sel.register(p.sock, selectors.EVENT_READ, p)
    except OSError as e:
        p.finish(False, errname(e.errno) if e.errno else str(e), now)


def on_event(sel, p, now):
    try:
        if p.phase == "connect":
            rc = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if rc != 0:
                sel.unregister(p.sock)
                p.finish(False, "refused" if rc == errno.ECONNREFUSED else errname(rc), now)
                return
            p.sock.send(p.token)
            p.phase = "reply"
            sel.modify(p.sock, selectors.EVENT_READ, p)
            return
        data = p.sock.recv(65536)
        if p.proto == "UDP":
            if data == p.token:
                sel.unregister(p.sock)
                p.finish(True, "echo", now)
            return  # a stray datagram: keep waiting
        if not data:
            sel.unregister(p.sock)
            p.finish(False, "closed-before-echo", now)
            return
        p.got += data
        if p.got.startswith(p.token):
            sel.unregister(p.sock)
            p.finish(True, "echo", now)
    except BlockingIOError:
        return
    except OSError as e:
        sel.unregister(p.sock)
        why = "refused" if e.errno == errno.ECONNREFUSED else errname(e.errno or 0)
        p.finish(False, why, now)


def run(request):
    timeout = float(request.get("timeout", 1.0))
    sel = selectors.DefaultSelector()
    now = time.monotonic()
    probes = [Probe(t, now, timeout) for t in request["targets"]]
    for p in probes:
        start(sel, p, now)
    while True:
        now = time.monotonic()
        pending = [p for p in probes if not p.done]
        if not pending:
            break
        for p in pending:
            if now >= p.deadline:
                sel.unregister(p.sock)
                p.finish(False, "timeout" if p.phase == "connect" or p.proto == "UDP"
                         else "connected-no-echo", p.deadline)
            elif p.proto == "UDP" and not p.resent and now >= p.resend_at:
                p.resent = True
                try:
                    p.sock.send(p.token)
                except OSError:
                    pass
        pending = [p for p in probes if not p.done]
        if not pending:
            break
        wake = min(min(p.deadline, p.resend_at if p.proto == "UDP" and not p.resent
                       else p.deadline) for p in pending)
        for key, _ in sel.select(max(0.0, wake - time.monotonic())):
            on_event(sel, key.data, time.monotonic())
    return [p.result() for p in probes]


def main():
    request = json.load(sys.stdin)
    json.dump(run(request), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
