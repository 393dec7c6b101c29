#!/usr/bin/env python3
"""Send hand-built Ethernet frames out of an interface (AF_PACKET), for end-to-end
tests and the demo. Each line of the spec file (JSON) is one packet:

  {"family": 4|6, "proto": "tcp"|"udp"|"icmp"|"icmpv6"|N, "src": A, "dst": B,
   "sport": N, "dport": N, "payload": N (bytes), "count": N, "tag": "any text",
   "fragments": N (send as N IP fragments), "id": N (IPv4 id / IPv6 fragment id)}

The source MAC is the interface's; the destination MAC is the gateway's, from
--dst-mac. Prints one JSON line per packet sent: the spec plus the frame in hex.
"""
import argparse, ipaddress, json, socket, struct, sys


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}


def l4(proto, spec, src, dst, family):
    payload = bytes((i * 7 + 3) & 0xFF for i in range(spec.get("payload", 0)))
    if family == 4:
        pseudo = lambda n: src.packed + dst.packed + struct.pack("!BBH", 0, proto, n)
    else:
        pseudo = lambda n: src.packed + dst.packed + struct.pack("!IxxxB", n, proto)
    if proto == 6:
        hdr = struct.pack("!HHIIBBHHH", spec.get("sport", 40000), spec.get("dport", 80), spec.get("seq", 1), 0,
                          5 << 4, spec.get("tcp_flags", 0x02), 65535, 0, 0)
        seg = hdr + payload
        c = csum(pseudo(len(seg)) + seg)
        return seg[:16] + struct.pack("!H", c) + seg[18:]
    if proto == 17:
        n = 8 + len(payload)
        seg = struct.pack("!HHHH", spec.get("sport", 40000), spec.get("dport", 53), n, 0) + payload
        c = csum(pseudo(n) + seg) or 0xFFFF
        return seg[:6] + struct.pack("!H", c) + seg[8:]
    if proto in (1, 58):
        t = 8 if proto == 1 else 128  # echo request
        seg = struct.pack("!BBHHH", t, 0, 0, 0x1234, 1) + payload
        c = csum((pseudo(len(seg)) if proto == 58 else b"") + seg)
        return seg[:2] + struct.pack("!H", c) + seg[4:]
    return payload


def fragments(spec, src_mac, dst_mac, n):
    """The packet of `spec` as n IP fragments (IPv4 flags/offset, IPv6 fragment
    header), payload cut at 8-byte boundaries; the first carries the L4 header."""
    family = spec.get("family", 4)
    p = spec.get("proto", "udp")
    proto = PROTOS.get(p, p) if isinstance(p, str) else int(p)
    src, dst = ipaddress.ip_address(spec["src"]), ipaddress.ip_address(spec["dst"])
    body = l4(proto, spec, src, dst, family)
    step = max(8, (len(body) // n + 7) // 8 * 8)
    pieces = [body[i:i + step] for i in range(0, len(body), step)]
    ident = spec.get("id", 1)
    out = []
    for k, piece in enumerate(pieces):
        off, more = k * step // 8, 1 if k < len(pieces) - 1 else 0
        if family == 4:
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(piece), ident, (more << 13) | off, 64, proto, 0,
                             src.packed, dst.packed)
            ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
            out.append(dst_mac + src_mac + b"\x08\x00" + ip + piece)
        else:
            fh = struct.pack("!BBHI", proto, 0, (off << 3) | more, ident)
            ip6 = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(piece), 44, 64, src.packed, dst.packed)
            out.append(dst_mac + src_mac + b"\x86\xdd" + ip6 + fh + piece)
    return out


def frame(spec, src_mac, dst_mac):
    family = spec.get("family", 4)
    p = spec.get("proto", "udp")
    proto = PROTOS.get(p, p) if isinstance(p, str) else int(p)
    src, dst = ipaddress.ip_address(spec["src"]), ipaddress.ip_address(spec["dst"])
    body = l4(proto, spec, src, dst, family)
    if family == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), spec.get("id", 1), 0, 64, proto, 0,
                         src.packed, dst.packed)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        return dst_mac + src_mac + b"\x08\x00" + ip + body
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(body), proto, 64, src.packed, dst.packed)
    return dst_mac + src_mac + b"\x86\xdd" + ip6 + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--for-seconds", type=float, default=0, help="repeat the spec until this much time passed")
    ap.add_argument("--interval", type=float, default=0.01, help="pause between repetitions (with --for-seconds)")
    ap.add_argument("spec", help="JSON lines file, or - for stdin")
    a = ap.parse_args()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    src_mac = s.getsockname()[4][:6]
    dst_mac = bytes.fromhex(a.dst_mac.replace(":", ""))
    f = sys.stdin if a.spec == "-" else open(a.spec)
    specs = [json.loads(line) for line in f if line.strip()]
    frames = [frame(spec, src_mac, dst_mac) for spec in specs]
    for spec, fr in zip(specs, frames):
        if spec.get("fragments", 1) > 1:  # sent as fragments instead of whole
            frs = fragments(spec, src_mac, dst_mac, spec["fragments"])
            for _ in range(spec.get("count", 1)):
                for f in frs:
                    s.send(f)
            print(json.dumps(dict(spec, frame_hex=[f.hex() for f in frs])))
            continue
        for _ in range(spec.get("count", 1)):
            s.send(fr)
        print(json.dumps(dict(spec, frame_hex=fr.hex())))
    if a.for_seconds:
        # Every repetition is a distinct packet (IPv4 id / TCP sequence number
        # counts up), so a test can tell a duplicated copy from a later packet.
        import time
        end = time.monotonic() + a.for_seconds
        n = 0
        while time.monotonic() < end:
            time.sleep(a.interval)
            n += 1
            for spec in specs:
                # The first send above used the spec's own id/seq (default 1): start at 2.
                fr = frame(dict(spec, id=((n + 1) & 0xFFFF), seq=n + 1), src_mac, dst_mac)
                for _ in range(spec.get("count", 1)):
                    s.send(fr)


if __name__ == "__main__":
    main()
