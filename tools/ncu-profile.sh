#!/usr/bin/env bash
# Nsight Compute on the first call of one warpgroup-MMA flash kernel (KERNEL: ForwardD128 or BackwardD128) in one anchor
# case, on a CUDA machine without .NET (the publish of tools/publish-gpu.sh): the speed-of-light, warp-state, scheduler,
# memory and source-counter sections (details.txt), the per-instruction SASS samples (sass.csv.gz), and from them the
# instruction mix and the hottest instructions (tools/sass_mix.py; PER_GROUP HGMMA per step and warp: 16 forward, 32
# backward).
# Usage: tools/ncu-profile.sh OUT_DIR [SEQ] [MEAN_DOC] [KERNEL]
set -uo pipefail
cd "$(dirname "$0")/.."
out=$1; seq=${2:-32768}; doc=${3:-4096}; kernel=${4:-BackwardD128}
per_group=16; [ "$kernel" = BackwardD128 ] && per_group=32
mkdir -p "$out"
[ -x /tmp/modelgen-gpu/modelgen ] || tar -C /tmp -xJf .publish/modelgen-gpu.tar.xz
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
timeout 400 "$ncu" --kernel-name regex:"Kernel_${kernel}" --launch-count 1 \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section SourceCounters --section MemoryWorkloadAnalysis \
  -o "$out/prof" -f /tmp/modelgen-gpu/modelgen bench-attention --seqs "$seq" --masks anchor --docs "$doc" --warmup 0 --repeats 1 \
  --out /tmp/ncu-run > "$out/run.txt" 2>&1
echo "ncu rc=$?"
"$ncu" --import "$out/prof.ncu-rep" --print-details all > "$out/details.txt" 2>&1
grep -E "Kernel_|Duration|Stall|Warp Cycles Per Issued|Issued Warp|No Eligible|Compute \(SM\) Thr|L2 Cache Thr|DRAM Thr" "$out/details.txt" | head -40
"$ncu" --import "$out/prof.ncu-rep" --page source --csv --print-source sass > "$out/sass.csv" 2>&1
python3 tools/sass_mix.py "$out/sass.csv" "$per_group" > "$out/sass-mix.txt"; head -60 "$out/sass-mix.txt"
# Only the reports travel back: the report itself is large.
gzip -f "$out/sass.csv"; rm -f "$out/prof.ncu-rep"
