"""PyTorch peer of `modelgen bench-attention`: the same attention cases on the same inputs, and the check of ours.

Called by `modelgen bench-attention --peer python3` with the path of the cases file it writes. For every case it reads
the inputs ModelGen generated (raw bf16, token-major [S, H*D], under the case's "inputs" folder) and times, the same
way ModelGen does (warm-up calls, then timed calls each followed by a synchronize):
  - causal without a window: SDPA (flash backend) forward, backward, forward+backward;
  - every other mask: FlexAttention (torch.compile'd) with a block mask built once ("flex"), and with the block mask
    built by torch.compile'd create_block_mask inside every call ("+mask" kernels: what a training step pays per
    batch, as AnchorContext does), compiled with static shapes: one graph per length (see below).
    Compile time is excluded (it happens in the warm-up calls).
For every case with a "check" folder it compares ModelGen's O, LSE, dQ, dK, dV and PyTorch's own bf16 kernel (SDPA or
Flex) against an fp32 reference (TF32 off, per head, with autograd) and prints one line per tensor:
  bound for O, dQ, dK, dV: ours' relative RMS error <= 2x PyTorch's and ours' max |error| <= 4x PyTorch's;
  bound for LSE (fp32 in both): max |ours - reference| <= 1e-3.
Output: one JSON object per line (BenchResult fields, or check fields).
"""
import json, math, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention, create_block_mask

# The backward-only timing reuses one graph (retain_graph=True), which compiled Flex allows only without donated buffers.
import torch._functorch.config
torch._functorch.config.donated_buffer = False
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
spec = json.load(open(sys.argv[1]))
H, KV, D = spec["heads"], spec["kvHeads"], spec["headDim"]
warmup, repeats = spec["warmup"], spec["repeats"]
dev = "cuda"
gqa = KV != H
scale = 1.0 / math.sqrt(D)
flex = torch.compile(flex_attention, dynamic=False)
# The block mask as a trainer at a fixed window length pays it: one static graph per length (compiled in the warm-up
# calls), then a call per batch. With torch.compile's default (automatic dynamic shapes) the second length seen turned
# the graph dynamic, and what the mask cost depended on the cases run before it (0.12-0.94 ms at 16K, 9-10 ms at 64K).
import torch._dynamo.config
torch._dynamo.config.cache_size_limit = 64
cbm = torch.compile(create_block_mask, dynamic=False)


def timed(fn):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append((time.perf_counter() - t) * 1e3)
    ts.sort()
    return ts[len(ts) // 2], ts[0]


def emit(kernel, shape, backend, t, work):
    print(json.dumps({"kernel": kernel, "shape": shape, "backend": backend, "medianMs": t[0], "minMs": t[1],
                      "repeats": repeats, "work": work, "unit": "TFLOP/s"}), flush=True)


def load_bf16(path, S, heads):
    """Token-major [S, heads*D] bf16 file -> [1, heads, S, D] contiguous bf16 on the GPU."""
    raw = torch.from_numpy(np.fromfile(path, dtype=np.int16)).to(dev).view(torch.bfloat16)
    return raw.view(S, heads, D).transpose(0, 1).contiguous().unsqueeze(0)


def mask_mod_for(case, doc):
    kind, window = case["mask"], case["window"]
    def mod(b, h, qi, ki):
        m = qi >= ki
        if window is not None:
            m = m & (qi - ki < window)
        if kind == "IntraDocument":
            m = m & (doc[qi] == doc[ki])
        elif kind == "Anchor":
            m = m & ((doc[qi] == doc[ki]) | (doc[ki] == 0))
        return m
    return mod


def allowed_matrix(case, doc, S):
    """Boolean [S, S]: the same mask_mod, evaluated on broadcast index grids (reference only, off the timed path)."""
    return mask_mod_for(case, doc)(None, None, torch.arange(S, device=dev)[:, None], torch.arange(S, device=dev)[None, :])


def reference(case, doc, q, k, v, do):
    """fp32 attention and gradients per head with autograd; q, k, v, do are [1, heads, S, D] bf16."""
    S = case["seq"]
    allowed = allowed_matrix(case, doc, S)
    o = torch.empty(H, S, D, device=dev); lse = torch.empty(H, S, device=dev)
    dq = torch.empty(H, S, D, device=dev); dk = torch.zeros(KV, S, D, device=dev); dv = torch.zeros(KV, S, D, device=dev)
    group = H // KV
    for h in range(H):
        kv = h // group
        qh = q[0, h].float().requires_grad_(); kh = k[0, kv].float().requires_grad_(); vh = v[0, kv].float().requires_grad_()
        s = (qh @ kh.T) * scale
        s = s.masked_fill(~allowed, float("-inf"))
        l = torch.logsumexp(s, -1)
        oh = torch.exp(s - l[:, None]) @ vh
        oh.backward(do[0, h].float())
        o[h] = oh.detach(); lse[h] = l.detach(); dq[h] = qh.grad; dk[kv] += kh.grad; dv[kv] += vh.grad
        del s, l, oh
    return o, lse, dq, dk, dv


def errors(x, ref):
    x = x.float(); ref = ref.float()
    return ((x - ref).pow(2).sum() / ref.pow(2).sum()).sqrt().item(), (x - ref).abs().max().item(), ref.abs().max().item()


inputs_cache = {}
for case in spec["cases"]:
    S, shape = case["seq"], case["shape"]
    if case["inputs"] not in inputs_cache:
        inputs_cache.clear(); torch.cuda.empty_cache()
        inputs_cache[case["inputs"]] = [load_bf16(os.path.join(case["inputs"], n + ".bin"), S, hs)
                                        for n, hs in (("q", H), ("k", KV), ("v", KV), ("do", H))]
    q, k, v, do = inputs_cache[case["inputs"]]
    doc = torch.tensor(case["documentIds"], device=dev, dtype=torch.int32) if case["documentIds"] is not None else None
    flops = case["flops"]
    qg, kg, vg = (t.detach().clone().requires_grad_() for t in (q, k, v))
    sdpa = case["mask"] == "Causal" and case["window"] is None
    if sdpa:
        def fwd(): return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        def fwd_g(): return F.scaled_dot_product_attention(qg, kg, vg, is_causal=True, enable_gqa=gqa)
        backend = "sdpa"
    else:
        mod = mask_mod_for(case, doc)
        bm = cbm(mod, None, None, S, S, device=dev)
        def fwd(): return flex(q, k, v, block_mask=bm, enable_gqa=gqa)
        def fwd_g(): return flex(qg, kg, vg, block_mask=bm, enable_gqa=gqa)
        backend = "flex"
    with torch.no_grad():
        emit("attention-fwd", shape, backend, timed(fwd), flops)
    out = fwd_g()
    emit("attention-bwd", shape, backend, timed(lambda: torch.autograd.grad(out, (qg, kg, vg), do, retain_graph=True)), 2.5 * flops)
    del out
    emit("attention-fwd+bwd", shape, backend, timed(lambda: torch.autograd.grad(fwd_g(), (qg, kg, vg), do)), 3.5 * flops)
    if not sdpa:
        def fwd_mask():
            return flex(q, k, v, block_mask=cbm(mod, None, None, S, S, device=dev), enable_gqa=gqa)
        def fwdbwd_mask():
            o = flex(qg, kg, vg, block_mask=cbm(mod, None, None, S, S, device=dev), enable_gqa=gqa)
            return torch.autograd.grad(o, (qg, kg, vg), do)
        with torch.no_grad():
            emit("attention-fwd+mask", shape, backend, timed(fwd_mask), flops)
        emit("attention-fwd+bwd+mask", shape, backend, timed(fwdbwd_mask), 3.5 * flops)

    if case["check"] is not None:
        folder = case["check"]
        ours = {n: load_bf16(os.path.join(folder, n + ".bin"), S, hs)[0] for n, hs in (("o", H), ("dq", H), ("dk", KV), ("dv", KV))}
        ours["lse"] = torch.from_numpy(np.fromfile(os.path.join(folder, "lse.bin"), dtype=np.float32)).to(dev).view(H, S)
        ref = dict(zip(("o", "lse", "dq", "dk", "dv"), reference(case, doc, q, k, v, do)))
        if sdpa:
            po = F.scaled_dot_product_attention(qg, kg, vg, is_causal=True, enable_gqa=gqa); plse = None
        else:
            po, plse = flex(qg, kg, vg, block_mask=bm, enable_gqa=gqa, return_lse=True)
        pdq, pdk, pdv = torch.autograd.grad(po, (qg, kg, vg), do)
        peer = {"o": po[0], "lse": None if plse is None else plse[0], "dq": pdq[0], "dk": pdk[0], "dv": pdv[0]}
        for name in ("o", "lse", "dq", "dk", "dv"):
            ours_rms, ours_max, ref_max = errors(ours[name], ref[name])
            if peer[name] is None:
                peer_rms = peer_max = None
            else:
                peer_rms, peer_max, _ = errors(peer[name], ref[name])
            if name == "lse":
                bound = "max |err| <= 1e-3"; ok = ours_max <= 1e-3
            else:
                bound = "rel RMS <= 2x peer, max <= 4x peer"; ok = ours_rms <= 2 * peer_rms and ours_max <= 4 * peer_max
            print(json.dumps({"check": shape, "tensor": name, "peer": backend, "oursRelRms": ours_rms,
                              "peerRelRms": peer_rms, "oursMaxAbs": ours_max, "peerMaxAbs": peer_max, "refMaxAbs": ref_max,
                              "bound": bound, "pass": bool(ok)}), flush=True)
        del ours, ref, peer, po, pdq, pdk, pdv
    del qg, kg, vg
    torch.cuda.empty_cache()
