#!/usr/bin/env python3
"""The project's own decoder of mirror copies: reads a pcap taken at the collector and
prints one JSON object per VXLAN copy (outer family, addresses, checksums and UDP ports, VNI, inner frame
length and hex, inner 5-tuple). End-to-end tests compare it with tshark's reading of
the same capture, so neither decoder is trusted alone.

Written by hand (stdlib only) on purpose: it must not share code with the agent.
"""
import json, struct, sys


def pcap_packets(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise SystemExit(f"{path}: not a pcap file (pcapng is not supported: use tcpdump -w)")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        yield linktype, data[off:off + incl], sec + usec / 1e6
        off += incl


def l3(frame):
    """Ethernet (+ one VLAN tag) -> (ethertype, payload offset)."""
    if len(frame) < 14:
        return None, 0
    et = struct.unpack("!H", frame[12:14])[0]
    off = 14
    if et in (0x8100, 0x88A8) and len(frame) >= 18:
        et = struct.unpack("!H", frame[16:18])[0]
        off = 18
    return et, off


MLD_REPORTS = bytes.fromhex("ff020000000000000000000000000016")


def kernel_chatter(frame):
    """An MLDv2 report (to ff02::16) the VM's kernel sends by itself for the
    solicited-node group of its address, retransmitted up to a second or so after
    the address is added: not a packet any test sends. It may fall between the
    start of one capture and the next, so the checks leave it out on both sides."""
    et, off = l3(frame)
    return et == 0x86DD and frame[off + 24:off + 40] == MLD_REPORTS


def ip_tuple(frame):
    et, off = l3(frame)
    t = dict(ethertype=None, proto=None, src=None, dst=None, sport=None, dport=None)
    if et == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        proto = frame[off + 9]
        frag = struct.unpack("!H", frame[off + 6:off + 8])[0] & 0x1FFF
        t.update(ethertype="ipv4", proto=proto,
                 src=".".join(map(str, frame[off + 12:off + 16])), dst=".".join(map(str, frame[off + 16:off + 20])))
        l4 = off + ihl
        if proto in (6, 17) and frag == 0 and len(frame) >= l4 + 4:
            t["sport"], t["dport"] = struct.unpack("!HH", frame[l4:l4 + 4])
    elif et == 0x86DD and len(frame) >= off + 40:
        import ipaddress
        nh = frame[off + 6]
        t.update(ethertype="ipv6", src=str(ipaddress.IPv6Address(frame[off + 8:off + 24])),
                 dst=str(ipaddress.IPv6Address(frame[off + 24:off + 40])))
        l4 = off + 40
        for _ in range(8):  # extension headers
            if nh in (0, 43, 60) and len(frame) >= l4 + 2:
                nh, l4 = frame[l4], l4 + (frame[l4 + 1] + 1) * 8
            elif nh == 44 and len(frame) >= l4 + 8:
                later = struct.unpack("!H", frame[l4 + 2:l4 + 4])[0] >> 3
                nh, l4 = frame[l4], l4 + 8
                if later:
                    t["proto"] = nh
                    return t
            else:
                break
        t["proto"] = nh
        if nh in (6, 17) and len(frame) >= l4 + 4:
            t["sport"], t["dport"] = struct.unpack("!HH", frame[l4:l4 + 4])
    elif et is not None:
        t["ethertype"] = f"0x{et:04x}"
    return t


def tcp_payload_len(frame):
    et, off = l3(frame)
    if et == 0x0800 and len(frame) >= off + 20 and frame[off + 9] == 6:
        ihl = (frame[off] & 0x0F) * 4
        total = struct.unpack("!H", frame[off + 2:off + 4])[0]
        if len(frame) >= off + ihl + 13:
            doff = (frame[off + ihl + 12] >> 4) * 4
            return total - ihl - doff, struct.unpack("!I", frame[off + ihl + 4:off + ihl + 8])[0]
    return None, None


def copies(path):
    for linktype, pkt, ts in pcap_packets(path):
        if linktype != 1:  # Ethernet only
            continue
        et, off = l3(pkt)
        # Outer IPv4, or IPv6 whose next header is UDP (SPEC §11: either family).
        if et == 0x0800 and len(pkt) >= off + 20 and pkt[off + 9] == 17:
            family, u = 4, off + (pkt[off] & 0x0F) * 4
            src, dst = ".".join(map(str, pkt[off + 12:off + 16])), ".".join(map(str, pkt[off + 16:off + 20]))
            # A header with its checksum sums to 0xffff (RFC 1071).
            s = sum(struct.unpack("!%dH" % ((u - off) // 2), pkt[off:u]))
            while s >> 16:
                s = (s & 0xFFFF) + (s >> 16)
            ip_csum_ok = s == 0xFFFF
        elif et == 0x86DD and len(pkt) >= off + 40 and pkt[off + 6] == 17:
            import ipaddress
            family, u = 6, off + 40
            src = str(ipaddress.IPv6Address(pkt[off + 8:off + 24]))
            dst = str(ipaddress.IPv6Address(pkt[off + 24:off + 40]))
            ip_csum_ok = None  # IPv6 has no header checksum
        else:
            continue
        if len(pkt) < u + 16:
            continue
        sport, dport, ulen, ucsum = struct.unpack("!HHHH", pkt[u:u + 8])
        if dport != 4789:
            continue
        flags = pkt[u + 8]
        vni = struct.unpack("!I", pkt[u + 12:u + 16])[0] >> 8
        inner = pkt[u + 16:]
        out = dict(ts=ts, outer_family=family, outer_src=src, outer_dst=dst,
                   outer_len=len(pkt) - off, udp_sport=sport, udp_csum=ucsum, outer_ip_csum_ok=ip_csum_ok, i_flag=bool(flags & 0x08), vni=vni,
                   inner_len=len(inner), inner_hex=inner.hex())
        out.update({"inner_" + k: v for k, v in ip_tuple(inner).items()})
        et, off3 = l3(inner)
        if et == 0x0800 and len(inner) >= off3 + 4:
            # What the IP header says the packet holds: a truncated copy carries less.
            out["inner_wire_len"] = off3 + struct.unpack("!H", inner[off3 + 2:off3 + 4])[0]
        elif et == 0x86DD and len(inner) >= off3 + 6:
            out["inner_wire_len"] = off3 + 40 + struct.unpack("!H", inner[off3 + 4:off3 + 6])[0]
        pl, seq = tcp_payload_len(inner)
        if pl is not None:
            out["inner_tcp_payload"] = pl
            out["inner_tcp_seq"] = seq
        yield out


if __name__ == "__main__":
    for c in copies(sys.argv[1]):
        print(json.dumps(c))
