"""The one server process of a lab pod: TCP and UDP echo on a list of ports, IPv4 and IPv6.

Runs inside the pod's network namespace (`ip netns exec <pod> python3 podserver.py --ports 80,81`).
Every TCP port accepts connections and echoes what it receives; every UDP port answers each
datagram with the same bytes, so a probe counts as "reachable" only when a reply came back.

Prints `READY <pid>` on stdout once every socket is bound, and exits when stdin reaches EOF (the
lab closes it on cleanup, and the kernel closes it if the lab dies), so a crashed lab leaves no
server behind. With --detach (labs kept by `lab.py create`) it ignores stdin.
"""

import argparse
import errno
import os
import selectors
import socket
import sys


def parse_ports(text):
    ports = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        port = int(part)
        if not 0 < port < 65536:
            raise ValueError("port out of range: %d" % port)
        ports.add(port)
    return sorted(ports)


def bind(family, kind, port):
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::", port))
    else:
        s.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        s.listen(128)
    s.setblocking(False)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", default="80,81", help="comma-separated ports, TCP and UDP each")
    ap.add_argument("--detach", action="store_true",
                    help="ignore stdin (a lab kept across processes; `lab.py cleanup` kills it)")
    args = ap.parse_args()

    sel = selectors.DefaultSelector()
    for port in parse_ports(args.ports):
        for family in (socket.AF_INET, socket.AF_INET6):
            sel.register(bind(family, socket.SOCK_STREAM, port), selectors.EVENT_READ, "listen")
            sel.register(bind(family, socket.SOCK_DGRAM, port), selectors.EVENT_READ, "udp")
    if not args.detach:
        sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()

    while True:
        for key, _ in sel.select():
            role = key.data
            if role == "stdin":
                if not os.read(key.fd, 4096):
                    return 0
            elif role == "listen":
                try:
                    conn, _ = key.fileobj.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, "conn")
            elif role == "conn":
                conn = key.fileobj
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    conn.close()
                    continue
                try:
                    # Echo lines are short; a full send buffer only happens with a stuck peer,
                    # and dropping its bytes then is fine for a test server.
                    conn.send(data)
                except OSError:
                    pass
            elif role == "udp":
                try:
                    data, peer = key.fileobj.recvfrom(65536)
                    key.fileobj.sendto(data, peer)
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.ECONNREFUSED):
                        sys.stderr.write("udp: %s\n" % e)


if __name__ == "__main__":
    sys.exit(main())
