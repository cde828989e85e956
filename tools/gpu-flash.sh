#!/usr/bin/env bash
# Flash attention on a CUDA machine without .NET, from the publish made by tools/publish-gpu.sh. Steps, in order:
#   ptx       `modelgen ptx --filter Flash` and `--filter AnchorKernels`, then `ptxas -v` on every flash kernel and
#             the anchor key's passes (registers, stack, spills; sm_90, or sm_90a for the warpgroup-MMA kernels);
#   fixtures  tiny checkpoints with head dims 64 and 128 made with transformers (tools/gen_flash_fixtures.py), each
#             through `parity --backend ilgpu --device cuda` in bf16 (the model runs FlashAttention) and fp32;
#   small     checks against PyTorch at S = 1024: head dims 64 and 128, GQA, every mask kind and a sliding window;
#   bench     the issue's benchmark, `bench-attention --peer python3` (H=32, D=128, causal and anchor with documents of
#             mean 1024 and 4096) at SEQS, checked against PyTorch at the lengths in CHECK;
#   long      the same at 32K and 64K (one warm-up and three timed calls: these cases take seconds);
#   ncu       Nsight Compute on the D=128 kernels of one anchor and one causal case (not in the default steps;
#             NCU_MASKS and NCU_KERNELS narrow it, e.g. NCU_MASKS=causal NCU_KERNELS=Backward);
#   kernels   every kernel of the first calls of one case (tile map, forward, backward and the backward's helpers) with its
#             duration from Nsight Compute (clocks locked to base, so slower than the benchmark; not in the default steps;
#             NCU_MASKS, NCU_SEQ and NCU_LAUNCHES choose).
# Usage: tools/gpu-flash.sh OUT_DIR [SEQS] [CHECK] [STEPS]   (STEPS: comma-separated; default ptx,fixtures,small,bench,long)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu-flash}; seqs=${2:-8192,16384}; check=${3:-8192}; steps=${4:-ptx,fixtures,small,bench,long}
mkdir -p "$out"
bin=/tmp/modelgen-gpu/modelgen
if [ ! -x "$bin" ]; then tar -C /tmp -xJf .publish/modelgen-gpu.tar.xz; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fail=0
if [[ $steps == *ptx* ]]; then
  "$bin" ptx --filter Flash --out "$out/ptx" > "$out/ptx.txt" 2>&1 || fail=1
  "$bin" ptx --filter AnchorKernels --out "$out/ptx" >> "$out/ptx.txt" 2>&1 || fail=1
  ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
  for f in "$out"/ptx/*.ptx; do
    # Warpgroup-MMA kernels are retargeted to sm_90a (see Hopper.Retarget); the others compile for plain sm_90.
    arch=sm_90; grep -q '^\.target sm_90a' "$f" && arch=sm_90a
    echo "== $(basename "$f") ($arch)"; "$ptxas" -v -arch=$arch "$f" -o /dev/null 2>&1
  done | tee "$out/ptxas.txt"
fi
if [[ $steps == *fixtures* ]]; then
  OUT="$out" python3 tools/gen_flash_fixtures.py 2>&1 | grep -v Warning
  rm -rf /tmp/fx_flash; mkdir -p /tmp/fx_flash; tar -C /tmp/fx_flash -xzf "$out/fixtures_flash.tar.gz"
  for dir in /tmp/fx_flash/*/; do
    for dtype in bf16 f32; do
      "$bin" parity "$dir" --backend ilgpu --device cuda --dtype $dtype > /tmp/parity.txt 2>&1; rc=$?
      echo "parity $(basename "$dir") $dtype rc=$rc $(tail -3 /tmp/parity.txt | tr '\n' ' ')"
      [ "$rc" = 0 ] || fail=1
    done
  done
fi
if [[ $steps == *small* ]]; then
  for d in 64 128; do
    timeout 240 "$bin" bench-attention --seqs 1024 --masks causal,intradoc,anchor,causal:w300 --docs 200 --heads 4 --kv-heads 2 --head-dim $d \
      --warmup 1 --repeats 2 --peer python3 --check-seqs 1024 --out "/tmp/small-d$d" > "/tmp/small-d$d.txt" 2>&1
    rc=$?; grep -E "check |against|  attention-.*(=|Flex)" "/tmp/small-d$d.txt"; [ "$rc" = 0 ] || fail=1
  done
fi
if [[ $steps == *bench* ]]; then
  timeout 300 "$bin" bench-attention --seqs "$seqs" --check-seqs "$check" --peer python3 --out "$out/bench" > "$out/bench.txt" 2>&1
  [ "$?" = 0 ] || fail=1
  grep -E "FAIL|rror|against|  attention-.*(=|Flex)" "$out/bench.txt"
fi
if [[ $steps == *long* ]]; then
  timeout 400 "$bin" bench-attention --seqs 32768,65536 --warmup 1 --repeats 3 --peer python3 --out "$out/bench-long" > "$out/bench-long.txt" 2>&1
  [ "$?" = 0 ] || fail=1
  grep -E "FAIL|rror|against|  attention-.*(=|Flex)" "$out/bench-long.txt"
fi
if [[ $steps == *ncu* ]]; then
  ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  for mask in ${NCU_MASKS:-anchor causal}; do
    for kernel in ${NCU_KERNELS:-Forward Backward}; do
      timeout 300 "$ncu" --kernel-name regex:"Kernel_${kernel}D128" --launch-count 1 \
        --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section InstructionStats --section Occupancy \
        --section LaunchStats --section MemoryWorkloadAnalysis --section SourceCounters --print-details all \
        "$bin" bench-attention --seqs 8192 --masks $mask --docs 1024 --warmup 0 --repeats 1 --out "$out/ncu-$mask" > "$out/ncu-$mask-$kernel.txt" 2>&1
      grep -E "Kernel_|Duration|SM Active|Executed Ipc|Warp Cycles|Stall|Registers|Achieved Occupancy" "$out/ncu-$mask-$kernel.txt" | head -40
      rm -rf "$out/ncu-$mask"
    done
  done
fi
if [[ $steps == *kernels* ]]; then
  ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  for mask in ${NCU_MASKS:-anchor causal}; do
    timeout 300 "$ncu" --metrics gpu__time_duration.sum --launch-count "${NCU_LAUNCHES:-12}" \
      "$bin" bench-attention --seqs "${NCU_SEQ:-8192}" --masks $mask --docs 1024 --warmup 0 --repeats 1 --out "$out/kernels-run" > "$out/kernels-$mask.txt" 2>&1
    echo "== $mask, S = ${NCU_SEQ:-8192}"; grep -E "^  [A-Za-z_]+ \(|gpu__time_duration" "$out/kernels-$mask.txt"
    rm -rf "$out/kernels-run"
  done
fi
# Only the reports travel back (the device tool returns a limited number of files).
rm -rf "$out/ptx" "$out/ptx.txt" "$out/gpu.txt"; find "$out" \( -name '*.png' -o -name 'peer-cases.json' \) -delete
exit $fail
