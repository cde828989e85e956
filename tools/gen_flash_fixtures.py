"""Tiny HF checkpoints whose head dimensions have flash kernels (64 and 128), so that `modelgen parity --backend ilgpu
--device cuda --dtype bf16` runs the model through FlashAttention (tensor cores) against transformers' logits.
Same layout and helpers as gen_more_fixtures.py. Writes OUT/fixtures_flash.tar.gz. Run on the H200 machine (step
`fixtures` of tools/gpu-flash.sh): they are made there, not committed, because the device tool carries at most 64 MiB
of working tree."""
import os, tarfile
from gen_more_fixtures import make, packed, L, M, OUT, root

make("llama_flash_d64_anchor", *L, 200, hidden_size=256, head_dim=64, extra=packed([1, 37, 100, 101, 170], "anchor"))
make("mistral_flash_d128_gqa", *M, 150, hidden_size=256, num_attention_heads=2, num_key_value_heads=1, head_dim=128)
with tarfile.open(os.path.join(OUT, "fixtures_flash.tar.gz"), "w:gz") as t:
    for n in ("llama_flash_d64_anchor", "mistral_flash_d128_gqa"):
        t.add(os.path.join(root, n), arcname=n)
print("done")
