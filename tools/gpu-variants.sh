#!/usr/bin/env bash
# Kernel variants side by side on a CUDA machine: every .publish/variants/NAME.dll (a ModelGen.Runtime.dll built with
# other generated kernels, e.g. from an older commit) replaces the one in a copy of the publish made by
# tools/publish-gpu.sh, and each copy runs the same `bench-attention` (ours only, same inputs: they are generated from
# fixed seeds). The publish itself runs as "candidate". Rounds alternate the variants, so that drift shows.
# Usage: tools/gpu-variants.sh ROUNDS BENCH_ARGS...   e.g. tools/gpu-variants.sh 2 --seqs 16384 --masks causal
# A variant from the last commit, next to the working tree's publish (carry both .publish/modelgen-gpu.tar.xz and
# .publish/variants to the device):
#   git worktree add /tmp/wt HEAD && dotnet build /tmp/wt/Runtime -c Release \
#     && mkdir -p .publish/variants && cp /tmp/wt/Runtime/bin/Release/net10.0/ModelGen.Runtime.dll .publish/variants/head.dll
# Only builds with the same public API as the publish's can be swapped in.
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=$1; shift
[ -x /tmp/modelgen-gpu/modelgen ] || tar -C /tmp -xJf .publish/modelgen-gpu.tar.xz
variants="candidate"
for f in .publish/variants/*.dll; do [ -e "$f" ] && variants="$variants $(basename "$f" .dll)"; done
for v in $variants; do
  rm -rf "/tmp/mg-$v"; cp -r /tmp/modelgen-gpu "/tmp/mg-$v"
  [ "$v" = candidate ] || cp ".publish/variants/$v.dll" "/tmp/mg-$v/ModelGen.Runtime.dll"
done
for r in $(seq "$rounds"); do
  for v in $variants; do
    echo "== round $r: $v"
    "/tmp/mg-$v/modelgen" bench-attention "$@" --out "/tmp/var-$v" 2>&1 | grep -E "documents|fwd ilgpu-flash-kernel|bwd ilgpu-flash-kernel|fwd\+bwd ilgpu-flash:|rror"
  done
done
