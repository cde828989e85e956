#!/usr/bin/env bash
# Runs ModelGen's GPU checks and benchmarks on a CUDA machine without .NET, from the publish made by
# tools/publish-gpu.sh (.publish/modelgen-gpu.tar.xz). Usage: tools/gpu-run.sh [OUT_DIR] [--no-bench]
#   1. every fixture under tests/fixtures through `parity --backend ilgpu --device cuda`, fp32 (≤ 1e-4) and bf16
#      (the derived bound, see README "ILGPU backend");
#   2. `bench --peer python3`: every kernel on ilgpu-cuda beside PyTorch on the same shapes, with ratios.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu}; mkdir -p "$out"
bin=/tmp/modelgen-gpu/modelgen
if [ ! -x "$bin" ]; then tar -C /tmp -xJf .publish/modelgen-gpu.tar.xz; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
fail=0
for cfg in $(find tests/fixtures -name expected.safetensors | sort); do
  dir=$(dirname "$cfg")
  for dtype in f32 bf16; do
    "$bin" parity "$dir" --backend ilgpu --device cuda --dtype "$dtype" > "$out/last.txt" 2>&1
    rc=$?
    line=$(tail -3 "$out/last.txt" | tr '\n' ' ')
    echo "$dir $dtype rc=$rc $line" | tee -a "$out/parity.txt"
    [ "$rc" = 0 ] || fail=1
  done
done
if [ "${2:-}" != "--no-bench" ]; then
  "$bin" bench --backends ilgpu-cuda --shapes h200 --peer python3 --out "$out/bench" 2>&1 | tee "$out/bench.txt"
fi
exit $fail
