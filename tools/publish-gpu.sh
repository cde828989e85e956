#!/usr/bin/env bash
# Publishes `modelgen` self-contained for linux-x64 (no .NET needed where it runs) for a CUDA machine, and packs it
# as .publish/modelgen-gpu.tar.xz: small enough to travel with the working tree (the device tool's `carry`).
# libtorch's native libraries (~600 MB) are left out: on a GPU machine the ILGPU backend runs (CUDA driver, cuBLAS),
# and the TorchSharp backend is not needed there. Commands that need it fail with a clear "libtorch" load error.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.publish/modelgen-gpu
rm -rf "$out" .publish/modelgen-gpu.tar.xz
dotnet publish Cli -c Release -r linux-x64 --self-contained true -p:ModelGenGpuPublish=true -o "$out" >/dev/null
# libtorch and its companions (TorchSharp's own glue library stays: it is small and loads lazily).
find "$out" -maxdepth 1 \( -name 'libtorch*.so*' -o -name 'libc10*.so*' -o -name 'libgomp*.so*' -o -name 'libshm*.so*' \
  -o -name 'libcaffe2*' -o -name 'libfbgemm*' -o -name 'libnvfuser*' -o -name 'libbackend_with_compiler*' \
  -o -name "libjitbackend_test*" -o -name "libnnapi_backend*" -o -name "libaoti_custom_ops*" -o -name "libmscordaccore*" -o -name "libmscordbi*" \
  -o -name "libcoreclrtraceptprovider*" -o -name "libclrgcexp*" -o -name 'libtorch_global_deps*' -o -name 'libiomp*' -o -name 'libmkl*' \) -delete
rm -f "$out"/*.pdb
tar -C .publish -cJf .publish/modelgen-gpu.tar.xz modelgen-gpu
ls -la .publish/modelgen-gpu.tar.xz
