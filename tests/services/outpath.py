#!/usr/bin/python3
"""Datagrams on the node's output path with a pod's source address, and a receiver that says which
arrived. Used by ipvs_path_test.py to exercise the hooks IPVS's forwarding takes (a packet with a
pod source leaving through output and postrouting) on a kernel without IPVS.

    outpath.py recv --port P    binds UDP [::]:P (both families), prints READY; every datagram's
                                payload (an id) is remembered; on a stdin line DUMP it prints
                                `SEEN <json [[id, source address], ...]>` and forgets them.
    outpath.py send             reads JSON [{"id", "src", "dst", "port"}] on stdin; for each,
                                a UDP socket with IP_FREEBIND and IP_TRANSPARENT (the source
                                need not be one of the namespace's addresses) bound to src
                                (null: let routing choose) sends the id three times to
                                dst:port; prints JSON {id: error or null} (a netfilter drop of a
                                local send is EPERM).
"""

import argparse
import json
import select
import socket
import sys
import time

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IPV6_FREEBIND = 78
IPV6_TRANSPARENT = 75


def recv(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    seen = []
    print("READY", flush=True)
    while True:
        r, _, _ = select.select([s, sys.stdin], [], [])
        if s in r:
            data, addr = s.recvfrom(2048)
            src = addr[0]
            if src.startswith("::ffff:"):
                src = src[len("::ffff:"):]
            seen.append([data.decode(errors="replace"), src])
        if sys.stdin in r:
            line = sys.stdin.readline()
            if not line:
                return 0
            if line.strip() == "DUMP":
                print("SEEN " + json.dumps(seen), flush=True)
                seen = []


def send():
    out = {}
    for t in json.load(sys.stdin):
        fam = socket.AF_INET6 if ":" in t["dst"] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            # FREEBIND allows the bind; TRANSPARENT lets IPv4 routing accept the foreign source.
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
            else:
                s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
                s.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
            if t.get("src"):
                s.bind((t["src"], 0))
            for _ in range(3):
                s.sendto(t["id"].encode(), (t["dst"], t["port"]))
                time.sleep(0.02)
            out[t["id"]] = None
        except OSError as e:
            out[t["id"]] = str(e)
        finally:
            s.close()
    print(json.dumps(out), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("role", choices=("recv", "send"))
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    return recv(args.port) if args.role == "recv" else send()


if __name__ == "__main__":
    sys.exit(main())
