#!/usr/bin/env python3
"""Region documents for the fleet e2e cases, and an independent computation of each
host's share (SPEC §9), written apart from the product's renderer.

  fleet_region.py gen --hosts 3 --sources 300 --sessions 100 [--seed N] > region.json
  fleet_region.py expect region.json HOST      canonical share of HOST
  fleet_region.py canon < {"sessions": [...], "sources": [...], ...}
                                               the same canonical form of what an agent serves
  fleet_region.py change region.json SESSION   the region with SESSION's vni changed
"""
import json
import random
import sys


def gen(hosts, n_sources, n_sessions, seed):
    rnd = random.Random(seed)
    host_names = [f"hv{i + 1}" for i in range(hosts)]
    sources = [{"id": f"s{i:04d}", "interface": f"tap{i}", "host": host_names[i % hosts]} for i in range(n_sources)]
    filters = [{"id": f"f{i:02d}", "inbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "all"}],
                "outbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "tcp",
                              "destinationPorts": str(1000 + i)}]} for i in range(20)]
    n_targets = max(1, (n_sessions + 9) // 8)
    targets = [{"id": f"t{i:03d}", "type": "nic", "address": f"198.51.100.{(i % 250) + 2}"} for i in range(n_targets)]
    uses = {s["id"]: 0 for s in sources}
    sessions = []
    order = [s["id"] for s in sources]
    rnd.shuffle(order)
    cursor = 0
    for i in range(n_sessions):
        k = rnd.randint(1, 5)
        picked = []
        # Every source in at least one session: walk the shuffled list first.
        while len(picked) < k and cursor < len(order):
            picked.append(order[cursor]); uses[order[cursor]] += 1; cursor += 1
        while len(picked) < k:
            cand = rnd.choice(order)
            if cand not in picked and uses[cand] < 3:
                picked.append(cand); uses[cand] += 1
        sessions.append({"id": f"sess{i:04d}", "priority": i + 1, "filter": filters[i % len(filters)]["id"],
                         "sources": picked, "target": targets[i % n_targets]["id"], "vni": 1000 + i})
    # Sources left over (more sources than sessions can hold): one more session each chunk.
    i = n_sessions
    while cursor < len(order):
        picked = order[cursor:cursor + 10]; cursor += 10
        sessions.append({"id": f"sess{i:04d}", "priority": i + 1, "filter": filters[i % len(filters)]["id"],
                         "sources": picked, "target": targets[i % n_targets]["id"], "vni": 1000 + i})
        i += 1
    return {"filters": filters, "targets": targets, "sources": sources, "sessions": sessions}


def canon(doc):
    sessions = sorted(f"{s['id']}:{','.join(sorted(s['sources']))}:{s.get('vni')}" for s in doc.get("sessions", []))
    return json.dumps({"sessions": sessions,
                       "sources": sorted(s["id"] for s in doc.get("sources", [])),
                       "filters": sorted(f["id"] for f in doc.get("filters", [])),
                       "targets": sorted(t["id"] for t in doc.get("targets", []))}, sort_keys=True)


def expect(region, host):
    mine = {s["id"] for s in region["sources"] if s["host"] == host}
    sessions = []
    for s in region["sessions"]:
        local = [x for x in s["sources"] if x in mine]
        if local:
            sessions.append(dict(s, sources=local))
    # Every source of the host, in a session or not (it is the host's ENI either way).
    return {"sessions": sessions,
            "sources": [s for s in region["sources"] if s["id"] in mine],
            "filters": [f for f in region["filters"] if f["id"] in {s["filter"] for s in sessions}],
            "targets": [t for t in region["targets"] if t["id"] in {s["target"] for s in sessions}]}


def main():
    cmd = sys.argv[1]
    if cmd == "gen":
        args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
        print(json.dumps(gen(int(args["--hosts"]), int(args["--sources"]), int(args["--sessions"]),
                             int(args.get("--seed", "1")))))
    elif cmd == "expect":
        print(canon(expect(json.load(open(sys.argv[2])), sys.argv[3])))
    elif cmd == "canon":
        print(canon(json.load(sys.stdin)))
    elif cmd == "change":
        region = json.load(open(sys.argv[2]))
        for s in region["sessions"]:
            if s["id"] == sys.argv[3]:
                s["vni"] = int(sys.argv[4]) if len(sys.argv) > 4 else s["vni"] + 100000
        print(json.dumps(region))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
