#!/usr/bin/env python3
"""Packets per second of one counter file over intervals the caller asks for: reads
a line "SECONDS" on stdin, answers a line "PPS". Run inside the namespace whose
/sys it reads (ip netns exec), so that a sample costs two file reads, not a fork."""
import sys
import time

path = sys.argv[1]


def count():
    with open(path) as f:
        return int(f.read())


for line in sys.stdin:
    seconds = float(line)
    c0, t0 = count(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = count(), time.monotonic()
    print(f"{(c1 - c0) / (t1 - t0):.0f}", flush=True)
