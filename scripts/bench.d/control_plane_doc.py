#!/usr/bin/env python3
"""A document with N sessions at the quotas' maximum rules, for the control-plane bench.

Every session has a filter of 10 inbound + 10 outbound rules (shared by at most
1,000 sessions, the quota), 3 sessions per source (the quota), and load-balancer
targets of 200 sessions each (the quota). Addresses are documentation ranges.
An optional second argument shifts every VNI, so that applying the shifted document
over the first changes every session (a whole-policy swap).
"""
import json, sys

n = int(sys.argv[1])
shift = int(sys.argv[2]) if len(sys.argv) > 2 else 0
filters = []
for f in range((n + 999) // 1000):
    def rules(direction):
        return [{"priority": r + 1, "action": "accept" if r % 3 else "reject", "ethertype": "ipv4",
                 "protocol": "tcp" if r % 2 else "udp", "source": f"198.18.{r}.0/24",
                 "destinationPorts": f"{1000 + 10 * r}-{1009 + 10 * r}"} for r in range(10)]
    filters.append({"id": f"f{f}", "inbound": rules("in"), "outbound": rules("out")})
targets = [{"id": f"t{t}", "type": "loadBalancer",
            "backends": [f"198.19.{t // 250}.{t % 250 + 1}", f"198.19.{t // 250 + 100}.{t % 250 + 1}"]}
           for t in range((n + 199) // 200)]
sources = [{"id": f"src{s}", "interface": f"eni{s}"} for s in range((n + 2) // 3)]
sessions = [{"id": f"s{i}", "priority": i % 3 + 1, "filter": f"f{i // 1000}", "sources": [f"src{i // 3}"],
             "target": f"t{i // 200}", "vni": i + 1 + shift} for i in range(n)]
json.dump({"filters": filters, "targets": targets, "sources": sources, "sessions": sessions}, sys.stdout)
