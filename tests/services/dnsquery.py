"""Asks DNS questions from the current network namespace (a lab pod) and reports the answers, so a
test can tell "resolved" from "blocked" from "answered NXDOMAIN".

    ip netns exec <pod> python3 dnsquery.py < request.json

Request (JSON): {"timeout": 1.0, "queries": [{"id": "...", "server": "10.96.0.10",
"name": "web.app.svc.cluster.local", "type": "A"|"AAAA", "transport": "udp"|"tcp"}]}
Response (JSON, request order): [{"id", "ok", "why", "rcode", "answers": ["10.96.0.20", ...]}]
`ok` means a well-formed response with our query id came back; `why` is "answer", "timeout",
"refused", ... All queries run concurrently (threads), so blocked ones cost one timeout in all.
"""

import concurrent.futures
import errno
import ipaddress
import json
import random
import socket
import struct
import sys
import time

TYPES = {"A": 1, "AAAA": 28}


def build_query(qid, name, qtype):
    out = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\x00" + struct.pack("!HH", TYPES[qtype], 1)


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1
        if n == 0:
            return off
        off += n


def parse_response(msg, qid):
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    if rid != qid or not flags & 0x8000:
        raise ValueError("not our response (id %d, flags %#x)" % (rid, flags))
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    answers = []
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        off += rdlen
        if rtype == 1 and rdlen == 4:
            answers.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == 28 and rdlen == 16:
            answers.append(str(ipaddress.IPv6Address(rdata)))
    return flags & 0xF, answers


def recv_exact(s, n, deadline):
    buf = b""
    while len(buf) < n:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def ask(q, timeout):
    qid = random.SystemRandom().randrange(1, 65536)
    msg = build_query(qid, q["name"], q["type"].upper())
    server = q["server"]
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    port = int(q.get("port", 53))
    deadline = time.monotonic() + timeout
    out = {"id": q.get("id"), "ok": False, "why": "timeout", "rcode": None, "answers": []}
    try:
        if q.get("transport", "udp") == "tcp":
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect((server, port))
                s.sendall(struct.pack("!H", len(msg)) + msg)
                n = struct.unpack("!H", recv_exact(s, 2, deadline))[0]
                reply = recv_exact(s, n, deadline)
        else:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((server, port))
                s.send(msg)
                resent = False
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout()
                    # One retransmission at half the timeout, as resolvers do.
                    s.settimeout(left / 2 if not resent else left)
                    try:
                        reply = s.recv(4096)
                    except socket.timeout:
                        if resent:
                            raise
                        resent = True
                        s.send(msg)
                        continue
                    if reply[:2] == msg[:2]:
                        break
        rcode, answers = parse_response(reply, qid)
        out.update(ok=True, why="answer", rcode=rcode, answers=answers)
    except socket.timeout:
        out["why"] = "timeout"
    except OSError as e:
        out["why"] = ("refused" if e.errno == errno.ECONNREFUSED else
                      errno.errorcode.get(e.errno, str(e)).lower() if e.errno else str(e))
    except (ValueError, struct.error, IndexError) as e:
        out["why"] = "bad response: %s" % e
    return out


def main():
    req = json.load(sys.stdin)
    timeout = float(req.get("timeout", 1.0))
    queries = req["queries"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(queries))) as ex:
        results = list(ex.map(lambda q: ask(q, timeout), queries))
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    sys.exit(main())
