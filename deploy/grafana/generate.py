#!/usr/bin/env python3
"""Writes mirror-agent.json, the Grafana dashboard over the agent's metrics.

The dashboard is generated so that its panels stay uniform; the JSON is committed,
and a test (Tests/MirrorAgentTests/DashboardTests.swift) checks that every metric,
label and reason it uses is one the agent exports (Sources/MirrorAgent/MetricFamily.swift).
Run it after changing a panel: python3 deploy/grafana/generate.py
"""
import json, os

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
panels = []
y = 0


def row(title):
    global y
    panels.append({"type": "row", "title": title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                   "id": len(panels) + 1, "panels": []})
    y += 1


def ts(title, description, targets, unit="short", w=12, stack=False):
    """A time series panel; `targets` is [(expr, legend)]. Two per line."""
    global y
    x = 0 if not panels or panels[-1]["type"] == "row" or panels[-1]["gridPos"]["x"] + panels[-1]["gridPos"]["w"] >= 24 else 12
    if x == 0 and panels and panels[-1]["type"] != "row":
        y += 8
    panels.append({
        "type": "timeseries", "title": title, "description": description, "datasource": DS, "id": len(panels) + 1,
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"stacking": {"mode": "normal" if stack else "none"}}}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}},
        "targets": [{"datasource": DS, "expr": e, "legendFormat": l, "refId": chr(65 + i)} for i, (e, l) in enumerate(targets)],
    })


def end_rowset():
    global y
    if panels and panels[-1]["type"] != "row":
        y += 8


row("Sessions")
ts("Packets accepted by session (top 10)", "Packets a rule of the session accepted, all sources and directions.",
   [(f'topk(10, sum by (session) (rate(mirror_session_packets_total{{{SEL}}}[$__rate_interval])))', "{{session}}")], "pps")
ts("Copies sent by session (top 10)", "Copies encapsulated and sent toward the collector.",
   [(f'topk(10, sum by (session) (rate(mirror_copies_sent_total{{{SEL}}}[$__rate_interval])))', "{{session}}")], "pps")
ts("Copy bytes sent by session (top 10)", "Inner frame bytes of the copies sent, after truncation.",
   [(f'topk(10, sum by (session) (rate(mirror_copies_sent_bytes_total{{{SEL}}}[$__rate_interval]) * 8))', "{{session}}")], "bps")
ts("Rules that matched (top 10)", "First-match hits per rule (only rules that counted something are exported by default: --metrics-rules counted).",
   [(f'topk(10, sum by (session, direction, rule_priority, action) (rate(mirror_rule_hits_total{{{SEL}}}[$__rate_interval])))',
     "{{session}} {{direction}} #{{rule_priority}} {{action}}")], "pps")
end_rowset()
row("Copies not made or not delivered")
ts("Copies dropped by reason", "Copies the encapsulation stage dropped.",
   [(f'sum by (reason) (rate(mirror_copies_dropped_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")], "pps", stack=True)
ts("Copies skipped by reason", "Copies not made because of sampleOneIn, the session's rateLimit or the host budget (--max-mirror-bps): production traffic first (SPEC §10).",
   [(f'sum by (reason) (rate(mirror_copies_skipped_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")], "pps", stack=True)
ts("Sessions skipping copies (top 10)", "Per session: copies skipped by sampling, rate limit or host budget.",
   [(f'topk(10, sum by (session, reason) (rate(mirror_copies_skipped_total{{{SEL}}}[$__rate_interval])))', "{{session}} {{reason}}")], "pps")
ts("Copies truncated by reason", "Copies cut to the session's packetLength or to the path MTU.",
   [(f'sum by (reason) (rate(mirror_copies_truncated_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")], "pps", stack=True)
ts("Packets not mirrored by reason", "Packets of the sources that were not mirrored: no rule matched, a reject rule, not IP, clone failures, suppressed by security groups or network ACLs.",
   [(f'sum by (reason) (rate(mirror_packets_not_mirrored_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")], "pps", stack=True)
ts("Suppressed by security groups and ACLs (top 10 sources)", "Packets the source's security groups or network ACL would drop, so they are not mirrored (SPEC §5).",
   [(f'topk(10, sum by (source, reason) (rate(mirror_packets_not_mirrored_total{{{SEL}, reason=~"suppressed_by_security_group|suppressed_by_acl"}}[$__rate_interval])))',
     "{{source}} {{reason}}")], "pps")
ts("GSO copies segmented and truncated whole", "GSO copies handed to the segmenter, and GSO copies cut whole for want of one.",
   [(f'sum(rate(mirror_copies_segmented_total{{{SEL}}}[$__rate_interval]))', "segmented"),
    (f'sum(rate(mirror_copies_truncated_gso_total{{{SEL}}}[$__rate_interval]))', "truncated whole")], "pps")
ts("Foreign frames dropped on the agent's devices", "Frames on the mirror device or the segmenter that were not copies.",
   [(f'sum(rate(mirror_device_foreign_frames_dropped_total{{{SEL}}}[$__rate_interval]))', "mirror device"),
    (f'sum(rate(mirror_segmenter_foreign_frames_dropped_total{{{SEL}}}[$__rate_interval]))', "segmenter")], "pps")
end_rowset()
row("Collectors")
ts("Collectors down", "Collectors whose health check failed (mirror_target_backend_up == 0): they get no copies; a load balancer's other backends keep their flows.",
   [(f'sum by (target, backend) (1 - mirror_target_backend_up{{{SEL}}}) > 0', "{{target}} {{backend}}")], "short")
ts("Copies dropped: no healthy collector", "Copies of targets with no healthy collector (target_unhealthy).",
   [(f'sum by (session) (rate(mirror_copies_dropped_total{{{SEL}, reason="target_unhealthy"}}[$__rate_interval]))', "{{session}}")], "pps")
ts("Copies dropped: collector unreachable", "Copies whose collector has no route (no_route) or whose next hop does not answer ARP/ND (neighbor_unresolved): nothing could leave, so they are dropped and counted, never sent.",
   [(f'sum by (session, reason) (rate(mirror_copies_dropped_total{{{SEL}, reason=~"no_route|neighbor_unresolved"}}[$__rate_interval]))', "{{session}} {{reason}}")], "pps")
ts("Copies handed to the VXLAN device", "Vxlan copies to collectors whose route is not out of an Ethernet device, handed to mirror0 (not in the copies sent: the device may still drop them; see its tx_dropped).",
   [(f'sum by (session) (rate(mirror_copies_sent_device_total{{{SEL}}}[$__rate_interval]))', "{{session}}")], "pps")
end_rowset()
row("Sources and security")
ts("Sources by state", "attached: programs on the interface; pending: no such interface on the host yet.",
   [(f'sum by (state) (mirror_sources{{{SEL}}})', "{{state}}")], "short", stack=True)
ts("Packets seen and mirrored", "Packets classified on the sources, and those accepted and cloned.",
   [(f'sum(rate(mirror_source_packets_seen_total{{{SEL}}}[$__rate_interval]))', "seen"),
    (f'sum(rate(mirror_source_packets_mirrored_total{{{SEL}}}[$__rate_interval]))', "mirrored"),
    (f'sum(rate(mirror_source_packets_established_total{{{SEL}}}[$__rate_interval]))', "established (stateful groups)")], "pps")
ts("Security group connections", "Connections the stateful security groups hold as established.",
   [(f'sum by (instance) (mirror_security_flows{{{SEL}}})', "{{instance}}")], "short")
end_rowset()
row("Agents")
ts("Counters readable", "1 when the agent could read its datapath counters at the scrape; 0 is an agent with no kernel datapath or a read error.",
   [(f'min by (instance) (mirror_datapath_counters_available{{{SEL}}})', "{{instance}}")], "short")
ts("Repairs of the agent's own devices", "The mirror device, stage 2, a pin or the segmenter put back after someone removed it.",
   [(f'sum by (what) (increase(mirror_agent_repairs_total{{{SEL}}}[$__range]))', "{{what}}")], "short")
ts("Policy apply time (p50, p99)", "Time to apply a policy to the datapath.",
   [(f'histogram_quantile(0.5, sum by (le) (rate(mirror_policy_apply_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50"),
    (f'histogram_quantile(0.99, sum by (le) (rate(mirror_policy_apply_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p99")], "s")
ts("Policy generation and hooks waiting for tcx", "Generation of the policy in force; interfaces still on clsact until the mover gives them tcx links.",
   [(f'max by (instance) (mirror_policy_generation{{{SEL}}})', "generation {{instance}}"),
    (f'sum by (instance) (mirror_tcx_pending_interfaces{{{SEL}}})', "tcx pending {{instance}}")], "short")
ts("Agent memory and CPU", "Resident memory and CPU of the agent processes.",
   [(f'process_resident_memory_bytes{{{SEL}, job=~"$job"}}', "RSS {{instance}}"),
    (f'rate(process_cpu_seconds_total{{{SEL}, job=~"$job"}}[$__rate_interval])', "CPU {{instance}}")], "short")
ts("Agent versions", "Agents by version and kernel.",
   [(f'count by (version, kernel) (mirror_agent_build_info{{{SEL}}})', "{{version}} on {{kernel}}")], "short")

dashboard = {
    "title": "Traffic mirroring agents", "uid": "mirror-agent", "tags": ["mirroring", "ebpf"],
    "description": "Sessions, copies by reason, skipped copies, collector health, suppressions and the agents' own health (metrics of mirror-agent's /metrics).",
    "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
        {"name": "job", "type": "query", "datasource": DS, "query": "label_values(mirror_agent_build_info, job)",
         "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}},
        {"name": "instance", "type": "query", "datasource": DS,
         "query": 'label_values(mirror_agent_build_info{job=~"$job"}, instance)',
         "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}},
    ]},
    "panels": panels,
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mirror-agent.json")
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
