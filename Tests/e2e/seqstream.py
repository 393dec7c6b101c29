#!/usr/bin/env python3
"""A numbered UDP stream and a collector that reads its mirror copies, for the live
migration case (Tests/e2e/cases/fleet_migration.sh).

  seqstream.py send --dst A --port N --pps N
      sends UDP through the kernel's stack (so a route change moves it to another
      interface without a restart) until SIGTERM; each payload is MAGIC, a sequence
      number and the send time. A stopped sender (SIGSTOP: the VM paused) does not
      burst to catch up when continued.
  seqstream.py collect --bind A --out FILE
      receives VXLAN on A:4789 (a real listener: no ICMP back to the hosts) and writes
      one line per copy of the stream: receive time, outer source address, VNI,
      sequence number, send time. Other copies are counted on the last line.
  seqstream.py analyze FILE T0 T1 HOST_A HOST_B [--from T]
      the copies of the window [T0, T1): the last sequence number copied by HOST_A
      and the first copied by HOST_B, the packets and time without a copy between
      them, the duplicates, and the delay from T (default T0) to HOST_B's first copy.
      Prints one JSON object.
Hand-written (stdlib only): it shares no code with the agent.
"""
import argparse, json, signal, socket, struct, sys, time

MAGIC = b"MSEQ"
HDR = struct.Struct("!4sQd")


def send(args):
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    interval = 1.0 / args.pps
    pad = b"\0" * max(0, args.size - HDR.size)
    seq = 0
    errors = 0
    nxt = time.monotonic()
    while not stop:
        now = time.monotonic()
        if nxt > now:
            time.sleep(nxt - now)
        # Behind by more than a few packets (stopped, or starved of CPU): start afresh
        # from now rather than send a burst.
        nxt = max(nxt + interval, time.monotonic() - 4 * interval)
        try:
            s.sendto(HDR.pack(MAGIC, seq, time.time()) + pad, (args.dst, args.port))
            seq += 1
        except OSError:
            errors += 1
    print(json.dumps({"sent": seq, "errors": errors}))


def collect(args):
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE (root)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    s.bind((args.bind, 4789))
    s.settimeout(0.2)
    other = 0
    with open(args.out, "w", buffering=1) as out:
        while not stop:
            try:
                data, (src, _) = s.recvfrom(65535)
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            t = time.time()
            # VXLAN (8) + Ethernet (14) + IPv4 + UDP (8) + our header.
            if len(data) < 8 + 14 + 20 + 8 + HDR.size or data[0] & 0x08 == 0:
                other += 1
                continue
            vni = int.from_bytes(data[4:7], "big")
            eth = data[8:]
            if eth[12:14] != b"\x08\x00" or eth[14 + 9] != 17:
                other += 1
                continue
            ihl = (eth[14] & 0x0F) * 4
            payload = eth[14 + ihl + 8:]
            if len(payload) < HDR.size or payload[:4] != MAGIC:
                other += 1
                continue
            _, seq, sent = HDR.unpack_from(payload)
            out.write(f"{t:.6f} {src} {vni} {seq} {sent:.6f}\n")
        out.write(f"# other {other}\n")


def load(path):
    rows = []
    for line in open(path):
        if line.startswith("#"):
            continue
        t, src, vni, seq, sent = line.split()
        rows.append((float(t), src, int(vni), int(seq), float(sent)))
    return rows


def analyze(args):
    rows = [r for r in load(args.file) if args.t0 <= r[0] < args.t1]
    a = [r for r in rows if r[1] == args.host_a]
    b = [r for r in rows if r[1] == args.host_b]
    others = sorted({r[1] for r in rows} - {args.host_a, args.host_b})
    seqs = [r[3] for r in rows]
    dup = len(seqs) - len(set(seqs))
    res = {"copies": len(rows), "fromA": len(a), "fromB": len(b), "duplicates": dup, "otherHosts": others}
    if a and b:
        last_a = max(a, key=lambda r: r[3])
        first_b = min(b, key=lambda r: r[3])
        got = set(seqs)
        lo, hi = min(seqs), max(seqs)
        # Every hole in the stream, to tell the migration's gap from losses elsewhere.
        holes = []
        n = lo
        while n <= hi:
            if n not in got:
                m = n
                while m + 1 <= hi and m + 1 not in got:
                    m += 1
                holes.append((n, m))
                n = m + 1
            else:
                n += 1
        in_gap = sum(m - n + 1 for n, m in holes if n > last_a[3] and m < first_b[3])
        res.update({
            "lastA": last_a[3], "firstB": first_b[3],
            "gapPackets": first_b[3] - last_a[3] - 1,
            "gapMs": round((first_b[4] - last_a[4]) * 1000, 1),
            "lostOutsideGap": sum(m - n + 1 for n, m in holes) - in_gap,
            "bAfterALast": sum(1 for r in b if r[3] < last_a[3]),
            "resumeMs": round((first_b[0] - (args.since if args.since is not None else args.t0)) * 1000, 1),
            "firstBTime": first_b[0],
        })
    print(json.dumps(res))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("send")
    ps.add_argument("--dst", required=True)
    ps.add_argument("--port", type=int, default=5001)
    ps.add_argument("--pps", type=float, default=1500)
    ps.add_argument("--size", type=int, default=64)
    pc = sub.add_parser("collect")
    pc.add_argument("--bind", required=True)
    pc.add_argument("--out", required=True)
    pa = sub.add_parser("analyze")
    pa.add_argument("file")
    pa.add_argument("t0", type=float)
    pa.add_argument("t1", type=float)
    pa.add_argument("host_a")
    pa.add_argument("host_b")
    pa.add_argument("--from", dest="since", type=float)
    args = p.parse_args()
    {"send": send, "collect": collect, "analyze": analyze}[args.cmd](args)


if __name__ == "__main__":
    main()
