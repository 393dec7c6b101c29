"""What the deployment files must hold beyond their schemas (issue 18, item 7).

Usage: check_manifests.py AGENT_RUN_HELP_FILE
Reads deploy/kubernetes/*.yaml and deploy/systemd/*.service; prints one line per
failed check and exits 1 if any failed.
"""
import glob
import re
import sys

import yaml  # PyYAML, a dependency of kubernetes-validate

problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


docs = {}
for path in sorted(glob.glob("deploy/kubernetes/*.yaml")):
    for d in yaml.safe_load_all(open(path)):
        if d:
            docs[(d["kind"], d["metadata"]["name"])] = d

# The flags the agent has today (its --help), plus the fleet flags of SPEC §9 that the
# fleet branch adds (`mirror-agent run --etcd ENDPOINTS --host NAME`, TLS as etcdctl).
agent_help = open(sys.argv[1]).read()
fleet_flags = {"--etcd", "--host", "--etcd-cacert", "--etcd-cert", "--etcd-key"}
known = set(re.findall(r"(--[a-z][a-z0-9-]*)", agent_help)) | fleet_flags

ds = docs.get(("DaemonSet", "mirror-agent"))
check(ds is not None, "no DaemonSet mirror-agent")
if ds:
    spec = ds["spec"]["template"]["spec"]
    meta = ds["spec"]["template"]["metadata"]
    check(spec.get("hostNetwork") is True, "DaemonSet: hostNetwork must be true")
    check(spec.get("hostPID") is True, "DaemonSet: hostPID (PID 1's mount table for the pins check)")
    c = spec["containers"][0]
    sc = c.get("securityContext", {})
    check(sc.get("privileged") is not True, "DaemonSet: capabilities, not privileged")
    caps = set(sc.get("capabilities", {}).get("add", []))
    check({"NET_ADMIN", "BPF"} <= caps, f"DaemonSet: capabilities {caps} lack NET_ADMIN/BPF")
    args = c.get("args", [])
    check(args[:1] == ["run"], "DaemonSet: args start with the run subcommand")
    flags = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    check(flags <= known, f"DaemonSet: flags the agent does not have: {sorted(flags - known)}")
    check({"--etcd", "--host"} <= flags, "DaemonSet: fleet mode needs --etcd and --host")
    metrics = next((a.split("=", 1)[1] for a in args if a.startswith("--metrics-address=")), "127.0.0.1:9469")
    port = int(metrics.rsplit(":", 1)[1])
    check(not metrics.startswith("127."), "DaemonSet: metrics on loopback cannot be scraped or probed")
    ann = meta.get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true", "DaemonSet: prometheus.io/scrape annotation")
    check(ann.get("prometheus.io/port") == str(port), f"DaemonSet: prometheus.io/port must be {port}")
    check(ann.get("prometheus.io/path") == "/metrics", "DaemonSet: prometheus.io/path annotation")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = c.get(probe, {}).get("httpGet", {})
        check(g.get("path") == path and g.get("port") == port, f"DaemonSet: {probe} must GET {path} on {port}")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    bpf = mounts.get("/sys/fs/bpf")
    check(bpf is not None and bpf.get("mountPropagation") == "Bidirectional",
          "DaemonSet: /sys/fs/bpf mounted with Bidirectional propagation")
    if bpf:
        check(vols[bpf["name"]].get("hostPath", {}).get("path") == "/sys/fs/bpf", "DaemonSet: /sys/fs/bpf is a hostPath")
    for flag in ("--state-dir", "--socket"):
        value = next((a.split("=", 1)[1] for a in args if a.startswith(flag + "=")), None)
        check(value is not None, f"DaemonSet: {flag} given")
        if value:
            d = value if flag == "--state-dir" else value.rsplit("/", 1)[0]
            m = mounts.get(d)
            check(m is not None and "hostPath" in vols[m["name"]], f"DaemonSet: {d} ({flag}) is a hostPath")

dep = docs.get(("Deployment", "mirror-controller"))
check(dep is not None, "no Deployment mirror-controller")
if dep:
    check(dep["spec"].get("replicas") == 2, "Deployment: two replicas")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    flags = {a.split("=", 1)[0] for a in c.get("args", []) if a.startswith("--")}
    check(flags <= fleet_flags - {"--host"}, f"Deployment: flags the controller will not have: {sorted(flags - fleet_flags)}")
    check("--etcd" in flags, "Deployment: --etcd")

for unit in ("mirror-agent", "mirror-controller"):
    text = open(f"deploy/systemd/{unit}.service").read()
    for key in ("StateDirectory=", "RuntimeDirectory=", "Restart=always"):
        check(re.search(rf"^{re.escape(key)}", text, re.M) is not None, f"{unit}.service: {key}")
agent_unit = open("deploy/systemd/mirror-agent.service").read()
exec_line = re.search(r"^ExecStart=(.*)$", agent_unit, re.M).group(1).split()
check(exec_line[1:2] == ["run"], "mirror-agent.service: ExecStart runs the run subcommand")
flags = {a for a in exec_line if a.startswith("--")}
check(flags <= known, f"mirror-agent.service: flags the agent does not have: {sorted(flags - known)}")
check(re.search(r"^CapabilityBoundingSet=.*CAP_NET_ADMIN.*CAP_BPF", agent_unit, re.M) is not None,
      "mirror-agent.service: CAP_NET_ADMIN and CAP_BPF in the bounding set")

for p in problems:
    print("FAIL:", p)
sys.exit(1 if problems else 0)
