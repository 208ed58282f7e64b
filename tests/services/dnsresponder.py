"""A tiny authoritative DNS responder for the lab's kube-dns pod: answers A and AAAA queries for
one name over UDP and TCP port 53 (IPv4 and IPv6 sockets), NXDOMAIN for every other name.

    ip netns exec <pod> python3 dnsresponder.py --name web.app.svc.cluster.local \
        --a 10.96.0.20 --aaaa fd00:10:96::14 [--port 53]

Prints `READY <pid>` once every socket is bound and exits when stdin reaches EOF, like the lab's
podserver.py. Only what a test needs: one question per message, class IN, no compression in
questions, answers point back at the question name (0xc00c).
"""

import argparse
import ipaddress
import os
import selectors
import socket
import struct
import sys

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
RCODE_OK, RCODE_FORMERR, RCODE_NXDOMAIN, RCODE_NOTIMP = 0, 1, 3, 4
TTL = 30


def parse_question(msg):
    """Returns (id, flags, qname as lower-case dotted name with trailing dot, qtype, qclass,
    end offset of the question) or raises ValueError."""
    if len(msg) < 12:
        raise ValueError("short header")
    qid, flags, qd, _an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    if qd != 1:
        raise ValueError("want exactly one question, got %d" % qd)
    labels, off = [], 12
    while True:
        if off >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed question name")
        labels.append(msg[off:off + n].decode("ascii", "replace").lower())
        off += n
    if off + 4 > len(msg):
        raise ValueError("short question")
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    return qid, flags, ".".join(labels) + ".", qtype, qclass, off + 4


def answer(msg, records):
    """Builds the response to query `msg`. records: {qtype: [packed rdata]} for the one name."""
    try:
        qid, flags, name, qtype, qclass, qend = parse_question(msg)
    except ValueError:
        qid = struct.unpack("!H", msg[:2])[0] if len(msg) >= 2 else 0
        return struct.pack("!HHHHHH", qid, 0x8000 | RCODE_FORMERR, 0, 0, 0, 0)
    rd = flags & 0x0100
    question = msg[12:qend]
    if (flags >> 11) & 0xF != 0:  # only QUERY
        return struct.pack("!HHHHHH", qid, 0x8400 | rd | RCODE_NOTIMP, 1, 0, 0, 0) + question
    if name not in records:
        return struct.pack("!HHHHHH", qid, 0x8400 | rd | RCODE_NXDOMAIN, 1, 0, 0, 0) + question
    rdatas = records[name].get(qtype, []) if qclass == CLASS_IN else []
    out = struct.pack("!HHHHHH", qid, 0x8400 | rd | RCODE_OK, 1, len(rdatas), 0, 0) + question
    for rdata in rdatas:
        out += struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, TTL, len(rdata)) + rdata
    return out


# Linux's IP_PKTINFO, for Pythons that do not export it.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def reply_from(ancillary):
    """The ancillary data that makes a UDP answer leave from the address the query was sent to
    (a responder holding several addresses, e.g. on lo, would otherwise answer from the address
    of the outgoing route, and the asker's connected socket would drop it)."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            # struct in_pktinfo {int ifindex; in_addr spec_dst; in_addr addr}: send from addr.
            return [(level, kind, struct.pack("=i4s4s", 0, data[8:12], b"\0" * 4))]
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            # struct in6_pktinfo {in6_addr addr; int ifindex}
            return [(level, kind, data[:16] + struct.pack("=i", 0))]
    return []


def bind(family, kind, port):
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if kind == socket.SOCK_DGRAM:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::", port))
    else:
        s.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        s.listen(64)
    s.setblocking(False)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="the one name answered")
    ap.add_argument("--a", action="append", default=[], help="IPv4 answer (repeatable)")
    ap.add_argument("--aaaa", action="append", default=[], help="IPv6 answer (repeatable)")
    ap.add_argument("--port", type=int, default=53)
    args = ap.parse_args()

    name = args.name.lower().rstrip(".") + "."
    records = {name: {
        TYPE_A: [ipaddress.IPv4Address(a).packed for a in args.a],
        TYPE_AAAA: [ipaddress.IPv6Address(a).packed for a in args.aaaa],
    }}

    sel = selectors.DefaultSelector()
    for family in (socket.AF_INET, socket.AF_INET6):
        sel.register(bind(family, socket.SOCK_DGRAM, args.port), selectors.EVENT_READ, "udp")
        sel.register(bind(family, socket.SOCK_STREAM, args.port), selectors.EVENT_READ, "listen")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    buffers = {}
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()

    while True:
        for key, _ in sel.select():
            role = key.data
            if role == "stdin":
                if not os.read(key.fd, 4096):
                    return 0
            elif role == "udp":
                try:
                    msg, anc, _flags, peer = key.fileobj.recvmsg(4096, 256)
                    key.fileobj.sendmsg([answer(msg, records)], reply_from(anc), 0, peer)
                except OSError:
                    pass
            elif role == "listen":
                try:
                    conn, _ = key.fileobj.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                buffers[conn] = b""
                sel.register(conn, selectors.EVENT_READ, "tcp")
            elif role == "tcp":
                conn = key.fileobj
                try:
                    data = conn.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    buffers.pop(conn, None)
                    conn.close()
                    continue
                buf = buffers[conn] + data
                # TCP messages carry a two-byte length prefix (RFC 1035 4.2.2).
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    n = struct.unpack("!H", buf[:2])[0]
                    reply = answer(buf[2:2 + n], records)
                    buf = buf[2 + n:]
                    try:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                    except OSError:
                        break
                buffers[conn] = buf


if __name__ == "__main__":
    sys.exit(main())
