#!/usr/bin/env python3
"""Instruction mix and stall samples of one kernel from Nsight Compute's per-instruction (SASS) page.

Input: the CSV of `ncu --import REPORT --page source --csv --print-source sass` (plain or .gz), one kernel.
Prints, per opcode, executed warp instructions and the share of stall samples, normalized per executed HGMMA group of
PER_GROUP instructions when given (e.g. 16 for the warpgroup-MMA forward: 8 for Q·Kᵀ and 8 for P·V per step and warp),
then the instructions with the most stall samples and the reasons behind the largest ones.
Usage: tools/sass_mix.py SASS_CSV [PER_GROUP]
"""
import collections, csv, gzip, sys

path = sys.argv[1]
per_group = float(sys.argv[2]) if len(sys.argv) > 2 else 0
rows = list(csv.reader((gzip.open if path.endswith(".gz") else open)(path, "rt", errors="replace")))
header = next(r for r in rows if r and r[0] == "Address")
col = {name: i for i, name in enumerate(header)}
reasons = [n for n in header if n.startswith("stall_") and "(Not Issued)" not in n]
data = []
for r in rows[rows.index(header) + 1:]:
    if not r or not r[0].startswith("0x"):
        if r and r[0] == "Kernel Name": break
        continue
    num = lambda n: float(r[col[n]] or 0) if n in col else 0.0
    text = r[col["Source"]].strip()
    parts = text.split()
    op = (parts[1] if parts and parts[0].startswith("@") else parts[0]) if parts else "?"
    data.append((text, op, num("Instructions Executed"), num("Warp Stall Sampling (All Samples)"), {k: num(k) for k in reasons}))
executed = sum(d[2] for d in data)
samples = sum(d[3] for d in data) or 1
groups = sum(d[2] for d in data if d[1].startswith("HGMMA")) / per_group if per_group else 0
print(f"{len(data)} instructions, {executed:.0f} executed warp instructions, {samples:.0f} stall samples")
by_exec, by_samples = collections.Counter(), collections.Counter()
for _, op, e, s, _ in data:
    by_exec[op] += e
    by_samples[op] += s
unit = "per step and warp" if groups else "% of executed"
print(f"{'opcode':30s} {unit:>18s} {'% of samples':>13s}")
for op, e in by_exec.most_common(40):
    value = e / groups if groups else 100 * e / executed
    print(f"{op:30s} {value:18.1f} {100 * by_samples[op] / samples:13.1f}")
print("stall reasons, % of samples:", ", ".join(f"{k[6:]} {100 * sum(d[4][k] for d in data) / samples:.1f}"
                                                for k in sorted(reasons, key=lambda k: -sum(d[4][k] for d in data))[:8]))
print("hottest instructions (% of samples, top reasons):")
for text, op, e, s, why in sorted(data, key=lambda d: -d[3])[:30]:
    top = ", ".join(f"{k[6:]} {100 * v / s:.0f}%" for k, v in sorted(why.items(), key=lambda kv: -kv[1])[:2] if s)
    print(f"  {100 * s / samples:5.2f}%  {text}   [{top}]")
