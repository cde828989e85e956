"""PyTorch peer of `modelgen bench`: the same kernels on the same shapes and document layouts, on CUDA.

Called by `modelgen bench --peer python3` with the path of the shapes file it writes; prints one JSON object per
line with the fields of ModelGen's BenchResult (kernel, shape, backend, median_ms, min_ms, repeats, work, unit).
Every case is timed the same way as ModelGen's: warm-up calls, then timed calls each followed by a synchronize.
"""
import json, math, sys, time
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention, create_block_mask

spec = json.load(open(sys.argv[1]))
s = spec["shapes"]
warmup, repeats = spec["warmup"], spec["repeats"]
dev = "cuda"
torch.manual_seed(0)
H, D = s["heads"], s["headDim"]


def timed(fn, warm=warmup, reps=repeats):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append((time.perf_counter() - t) * 1e3)
    ts.sort()
    return ts[len(ts) // 2], ts[0], reps


def emit(kernel, shape, backend, t, work, unit):
    print(json.dumps({"kernel": kernel, "shape": shape, "backend": backend, "medianMs": t[0], "minMs": t[1],
                      "repeats": t[2], "work": work, "unit": unit}), flush=True)


# RoPE, HF style on [1, H, S, D] bf16 with fp32 angles (cos/sin cast to bf16, as HF's rotary module does).
S = s["ropeSeq"]
x = torch.randn(1, H, S, D, device=dev, dtype=torch.bfloat16)
inv = 1.0 / (500000 ** (torch.arange(0, D, 2, device=dev).float() / D))
ang = torch.outer(torch.arange(S, device=dev).float(), inv); emb = torch.cat([ang, ang], -1)
cos, sin = emb.cos().to(torch.bfloat16), emb.sin().to(torch.bfloat16)
def rope():
    return x * cos + torch.cat([-x[..., D // 2:], x[..., :D // 2]], -1) * sin
shape = f"1x{H}x{S}x{D}"
emit("rope", shape, "torch-eager", timed(rope), 2.0 * x.numel() * 2, "GB/s")
emit("rope", shape, "torch-compile", timed(torch.compile(rope)), 2.0 * x.numel() * 2, "GB/s")
del x, cos, sin, emb, ang

# RMSNorm (HF LlamaRMSNorm) on bf16.
T, W = s["normTokens"], s["normWidth"]
xn = torch.randn(T, W, device=dev, dtype=torch.bfloat16); wn = torch.randn(W, device=dev, dtype=torch.bfloat16)
def rms():
    h = xn.float(); h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5); return wn * h.to(torch.bfloat16)
emit("rmsnorm", f"{T}x{W}", "torch-eager", timed(rms), 2.0 * xn.numel() * 2, "GB/s")
emit("rmsnorm", f"{T}x{W}", "torch-compile", timed(torch.compile(rms)), 2.0 * xn.numel() * 2, "GB/s")
del xn

# Attention forward: SDPA for causal, FlexAttention (block mask compiled, as AnchorContext does) for document masks.
flex = torch.compile(flex_attention, dynamic=False)
# Static shapes, one graph per length, as in tools/bench_attention_peer.py (with automatic dynamic shapes the second
# length seen turned the graph dynamic, and later lengths paid for the dynamic graph).
import torch._dynamo.config
torch._dynamo.config.cache_size_limit = 64
cbm = torch.compile(create_block_mask, dynamic=False)
for case in spec["attention"]:
    S = case["seq"]
    doc = torch.tensor(case["documentIds"], device=dev, dtype=torch.int32)
    q = torch.randn(1, H, S, D, device=dev, dtype=torch.bfloat16)
    k = torch.randn_like(q); v = torch.randn_like(q)
    shape = case["shape"]
    emit("attention-causal", shape, "sdpa", timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
         case["flops"]["causal"], "TFLOP/s")
    masks = {
        "intradoc": lambda b, h, qi, ki: (qi >= ki) & (doc[qi] == doc[ki]),
        "anchor": lambda b, h, qi, ki: (qi >= ki) & ((doc[qi] == doc[ki]) | (doc[ki] == 0)),
    }
    for name, mm in masks.items():
        bm = cbm(mm, None, None, S, S, device=dev)
        emit(f"attention-{name}", shape, "flex", timed(lambda: flex(q, k, v, block_mask=bm)), case["flops"][name], "TFLOP/s")
        emit(f"attention-{name}+mask", shape, "flex", timed(lambda: flex(q, k, v, block_mask=cbm(mm, None, None, S, S, device=dev))),
             case["flops"][name], "TFLOP/s")
    del q, k, v
    torch.cuda.empty_cache()

# GEMM, bf16 in, fp32 accumulate (y = x wᵀ as a Linear does).
N = s["gemm"]
a = torch.randn(N, N, device=dev, dtype=torch.bfloat16); b = torch.randn(N, N, device=dev, dtype=torch.bfloat16)
emit("gemm", f"{N}^3", "torch-matmul", timed(lambda: F.linear(a, b)), 2.0 * N ** 3, "TFLOP/s")
del a, b

# Block mask of the anchor mask for the same layout: eager, and compiled after the compile (reported separately).
tm = spec["tileMap"]
doc = torch.tensor(tm["documentIds"], device=dev, dtype=torch.int32)
S = tm["seq"]
def anchor(b, h, qi, ki):
    return (qi >= ki) & ((doc[qi] == doc[ki]) | (doc[ki] == 0))
emit("tilemap", tm["shape"], "flex-create_block_mask-eager", timed(lambda: create_block_mask(anchor, None, None, S, S, device=dev), 1, 3), 0, "ms")
cbm2 = torch.compile(create_block_mask, dynamic=False)
t0 = time.perf_counter(); cbm2(anchor, None, None, S, S, device=dev); torch.cuda.synchronize()
emit("tilemap-compile", tm["shape"], "flex-create_block_mask-compiled", ((time.perf_counter() - t0) * 1e3,) * 2 + (1,), 0, "ms")
emit("tilemap", tm["shape"], "flex-create_block_mask-compiled", timed(lambda: cbm2(anchor, None, None, S, S, device=dev)), 0, "ms")
