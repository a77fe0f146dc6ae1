#!/usr/bin/env python3
"""report.py — the per-layer table of Documentation/targets/FPGA.md from e2e_resnet.py's KILN_VTA_REPORT files.

    python e2e_resnet.py KILN PLUGIN WORKDIR && python report.py WORKDIR

Merges the reports of the first input's runs (one file per VTA partition) on fpga-vta-pynq and fpga-vta-zcu104
into one markdown table: per layer MACs, cycles, latency, effective GOPS (2·MACs / latency), GEMM busy share,
MAC efficiency (real MACs / (GEMM uop-iterations · 256)), ALU busy share, and the zcu104 columns.
"""
import glob
import os
import sys


def rows(work, target):
    out, totals = [], []
    for f in sorted(glob.glob(os.path.join(work, f"report-{target}-0-*.md"))):
        for line in open(f):
            if line.startswith("| ") and not line.startswith(("| layer", "|---")):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                (totals if cells[0] == "total" else out).append(cells)
    return out, totals


def main():
    work = sys.argv[1]
    pynq, pynq_totals = rows(work, "fpga-vta-pynq")
    zcu, zcu_totals = rows(work, "fpga-vta-zcu104")
    if not pynq or not zcu:
        sys.exit("report.py: no reports in " + work)
    by_name = {r[0]: r for r in zcu}
    print("| layer | kind | MACs | pynq cycles | pynq latency (µs) | pynq GOPS | GEMM busy | MAC efficiency | ALU busy | zcu104 cycles | zcu104 latency (µs) | zcu104 GOPS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in pynq:
        z = by_name[r[0]]
        print("| " + " | ".join(r[:9] + [z[3], z[4], z[5]]) + " |")
    macs = sum(int(r[2]) for r in pynq)
    pc, zc = sum(int(t[3]) for t in pynq_totals), sum(int(t[3]) for t in zcu_totals)
    pus, zus = pc / 100e6 * 1e6, zc / 333e6 * 1e6
    print(f"| **all {len(pynq_totals)} VTA partitions** | | {macs} | {pc} | {pus:.2f} | {2 * macs / (pus * 1e3):.2f} | | | | {zc} | {zus:.2f} | {2 * macs / (zus * 1e3):.2f} |")


if __name__ == "__main__":
    main()
