#!/usr/bin/env python3
"""The BPF programs on a device's TC hook, whichever way they are attached:
tcx links (kernel >= 6.6, BPF_PROG_QUERY; bpftool 7.1 and `tc` do not list them)
and clsact filters (`tc filter show`). One line per program, in run order:

    tcx <prog id> <prog name>
    clsact <prog id> <prog name>

Usage: hooks.py DEV ingress|egress   (in the device's network namespace)
       hooks.py --all                 (every device: "DEV HOOK MODE ID NAME" lines)
       hooks.py --has-tcx             (exit 0 when the kernel has tcx)
"""
import ctypes
import os
import re
import subprocess
import sys

libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF = 321  # x86_64
BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY = 13, 15, 16
TCX = {"ingress": 46, "egress": 47}


def bpf(cmd, attr):
    rc = libc.syscall(SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    return rc, ctypes.get_errno()


def tcx_ids(ifindex, hook, probe=False):
    ids = (ctypes.c_uint32 * 64)()
    attr = (ctypes.c_uint8 * 128)()
    ctypes.c_uint32.from_buffer(attr, 0).value = ifindex         # target_ifindex
    ctypes.c_uint32.from_buffer(attr, 4).value = TCX[hook]       # attach_type
    ctypes.c_uint64.from_buffer(attr, 16).value = ctypes.addressof(ids)  # prog_ids
    ctypes.c_uint32.from_buffer(attr, 24).value = 64             # prog_cnt
    rc, err = bpf(BPF_PROG_QUERY, attr)
    if rc != 0:
        if err == 22:  # EINVAL: no tcx in this kernel
            return None if probe else []
        sys.exit(f"hooks.py: BPF_PROG_QUERY: {os.strerror(err)}")
    return list(ids[: ctypes.c_uint32.from_buffer(attr, 24).value])


def prog_name(prog_id):
    attr = (ctypes.c_uint8 * 128)()
    ctypes.c_uint32.from_buffer(attr, 0).value = prog_id
    fd, err = bpf(BPF_PROG_GET_FD_BY_ID, attr)
    if fd < 0:
        return "?"
    info = (ctypes.c_uint8 * 256)()
    attr = (ctypes.c_uint8 * 128)()
    ctypes.c_uint32.from_buffer(attr, 0).value = fd
    ctypes.c_uint32.from_buffer(attr, 4).value = 256
    ctypes.c_uint64.from_buffer(attr, 8).value = ctypes.addressof(info)
    rc, _ = bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    os.close(fd)
    return bytes(info[64:80]).split(b"\0")[0].decode() if rc == 0 else "?"  # bpf_prog_info.name


def programs(dev, hook):
    """(mode, id, name) of every program on the hook, in run order."""
    try:
        ifindex = int(open(f"/sys/class/net/{dev}/ifindex").read())
    except OSError:
        sys.exit(f"hooks.py: no device {dev}")
    out = [("tcx", i, prog_name(i)) for i in tcx_ids(ifindex, hook)]
    tc = subprocess.run(["tc", "filter", "show", "dev", dev, hook], capture_output=True, text=True).stdout
    out += [("clsact", int(m.group(1)), prog_name(int(m.group(1)))) for m in re.finditer(r" id (\d+) name (\S+)", tc)]
    return out


def main():
    if sys.argv[1:] == ["--has-tcx"]:
        sys.exit(0 if tcx_ids(1, "ingress", probe=True) is not None else 1)
    if sys.argv[1:] == ["--all"]:
        for dev in sorted(os.listdir("/sys/class/net")):
            for hook in TCX:
                for mode, i, name in programs(dev, hook):
                    print(dev, hook, mode, i, name)
        return
    if len(sys.argv) != 3 or sys.argv[2] not in TCX:
        sys.exit("usage: hooks.py DEV ingress|egress")
    for mode, i, name in programs(sys.argv[1], sys.argv[2]):
        print(mode, i, name)


main()
