#!/usr/bin/env bash
# Flash attention on a CUDA machine without .NET, from the publish made by tools/publish-gpu.sh:
#   1. `modelgen ptx --filter Flash` and `ptxas -v -arch=sm_90` on every flash kernel (registers, stack frame, spills);
#   2. small checks against PyTorch (GQA, head dims 64 and 128, every mask kind);
#   3. the issue's benchmark: `bench-attention --peer python3` (H=32, D=128, causal and anchor, documents of mean
#      1024 and 4096), checked against PyTorch at the lengths in CHECK.
#   4. (step ncu) Nsight Compute on the forward and backward kernels of one anchor case: throughput, stalls, occupancy.
# Usage: tools/gpu-flash.sh OUT_DIR [SEQS] [CHECK] [STEPS]   (STEPS: any of ptx,small,bench,ncu; default ptx,small,bench)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu-flash}; seqs=${2:-8192,16384,32768,65536}; check=${3:-8192}; steps=${4:-ptx,small,bench}
mkdir -p "$out"
bin=/tmp/modelgen-gpu/modelgen
if [ ! -x "$bin" ]; then tar -C /tmp -xJf .publish/modelgen-gpu.tar.xz; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
fail=0
if [[ $steps == *ptx* ]]; then
  "$bin" ptx --filter Flash --out "$out/ptx" > "$out/ptx.txt" 2>&1 || fail=1
  ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
  for f in "$out"/ptx/*.ptx; do
    echo "== $(basename "$f")"; "$ptxas" -v -arch=sm_90 "$f" -o /dev/null 2>&1
  done | tee "$out/ptxas.txt"
fi
if [[ $steps == *small* ]]; then
  for d in 64 128; do
    timeout 240 "$bin" bench-attention --seqs 1024 --masks causal,intradoc,anchor,causal:w300 --docs 200 --heads 4 --kv-heads 2 --head-dim $d \
      --warmup 1 --repeats 2 --peer python3 --check-seqs 1024 --out "$out/small-d$d" 2>&1 | tee "$out/small-d$d.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || fail=1
  done
fi
if [[ $steps == *bench* ]]; then
  timeout 560 "$bin" bench-attention --seqs "$seqs" --check-seqs "$check" --peer python3 --out "$out/bench" 2>&1 | tee "$out/bench.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || fail=1
fi
if [[ $steps == *ncu* ]]; then
  ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  for mask in anchor causal; do
    timeout 300 "$ncu" --kernel-name regex:'Kernel_(Forward|Backward)D128' --launch-count 2 \
      --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
      "$bin" bench-attention --seqs 8192 --masks $mask --docs 1024 --warmup 0 --repeats 1 --out "$out/ncu-$mask" > "$out/ncu-$mask.txt" 2>&1
    grep -E "Kernel_|Duration|Throughput|Registers|Achieved Occupancy|Stall|Warp Cycles|Issued|Block Limit|Shared Memory" "$out/ncu-$mask.txt" | head -80
    rm -rf "$out/ncu-$mask"
  done
fi
# Only the reports travel back (the device tool returns a limited number of files).
rm -rf "$out/ptx"; find "$out" \( -name '*.png' -o -name 'peer-cases.json' \) -delete
exit $fail
