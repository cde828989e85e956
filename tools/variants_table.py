#!/usr/bin/env python3
"""Kernel times of a tools/gpu-variants.sh log, each variant against `head`: mean over rounds per case and kernel.

Usage: tools/variants_table.py VARIANTS_LOG [BASELINE]   (BASELINE: the variant the others are compared with; default head)
"""
import re, sys

path, baseline = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "head"
times, variant, case = {}, None, None
for line in open(path):
    if m := re.match(r"== round \d+: (\S+)", line):
        variant = m.group(1)
    elif m := re.match(r"(.*) H\d+ S(\d+) D\d+: \d+ documents", line):
        case = f"{m.group(1).replace('anchor ', '')} {int(m.group(2)) // 1024}K"
    elif (m := re.match(r"\s+attention-(fwd|bwd|fwd\+bwd) ilgpu-flash-kernel: ([\d.]+) ms", line)) and variant:
        times.setdefault((case, m.group(1)), {}).setdefault(variant, []).append(float(m.group(2)))
variants = sorted({v for per in times.values() for v in per if v != baseline})
print(f"| case | kernel | {baseline} (ms) | " + " | ".join(f"{v} (ms) | {baseline} / {v}" for v in variants) + " |")
print("|---|---|---|" + "---|---|" * len(variants))
for (case, kernel), per in times.items():
    if baseline not in per: continue
    base = sum(per[baseline]) / len(per[baseline])
    cells = []
    for v in variants:
        t = sum(per[v]) / len(per[v]) if v in per else float("nan")
        cells.append(f"{t:.3f} | {base / t:.3f}")
    print(f"| {case} | {kernel} | {base:.3f} | " + " | ".join(cells) + " |")
