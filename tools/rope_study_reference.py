"""PyTorch/transformers reference for `modelgen analyze-rope` (run where torch + transformers are installed).
Repeats the D(X, Δ1, Δ2) measure of "When Precision Meets Position" on an HF checkpoint with the token ids that
modelgen used (its tokens.json) and compares with modelgen's d_vs_delta.csv.

    python3 tools/rope_study_reference.py CHECKPOINT_DIR STUDY_DIR [--device cpu|cuda]

Post-RoPE q and k are captured by wrapping transformers' apply_rotary_pos_emb; probabilities are computed in fp64
with a causal mask exactly as ModelGen's RopeStudy does. Precisions: bf16 (bf16 weights and activations, rotation in
bf16 as HF does) and fp32."""
import sys, json, csv, math, argparse, torch
import transformers
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.qwen2 import modeling_qwen2

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint"); ap.add_argument("study"); ap.add_argument("--device", default="cpu")
a = ap.parse_args()
spec = json.load(open(f"{a.study}/tokens.json"))
captured = []
for mod in (modeling_llama, modeling_mistral, modeling_qwen2):
    original = mod.apply_rotary_pos_emb
    def wrapped(q, k, cos, sin, *args, _orig=original, **kw):
        qe, ke = _orig(q, k, cos, sin, *args, **kw)
        captured.append((qe.detach(), ke.detach()))
        return qe, ke
    mod.apply_rotary_pos_emb = wrapped

def capture(model, ids, delta):
    captured.clear()
    pos = (torch.arange(ids.shape[1]) + delta)[None].to(a.device)
    with torch.no_grad():
        model.model(input_ids=ids.to(a.device), position_ids=pos)
    return [(q.double().cpu(), k.double().cpu()) for q, k in captured]

def probs(q, k):
    h, t, d = q.shape[1], q.shape[2], q.shape[3]
    k = k.repeat_interleave(h // k.shape[1], dim=1)
    s = (q[0] @ k[0].transpose(-1, -2)) / math.sqrt(d)
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return s.softmax(-1)

def deviation(a_, b_):
    t = a_[0][0].shape[2]
    n = 1.0 / (t - torch.arange(t, dtype=torch.float64))
    return sum(((probs(*x) - probs(*y)).abs().sum((0, 1)) * n).sum().item() for x, y in zip(a_, b_))

ours = {}
for row in csv.DictReader(open(f"{a.study}/d_vs_delta.csv")):
    ours[(row["precision"], int(row["delta1"]))] = float(row["D"])
print("transformers", transformers.__version__, "torch", torch.__version__, "device", a.device)
print("precision,delta1,D_modelgen,D_torch,ratio")
worst = 0.0
for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
    model = transformers.AutoModelForCausalLM.from_pretrained(a.checkpoint, dtype=dtype, attn_implementation="eager").to(a.device).eval()
    sums = {d: 0.0 for d in spec["delta1"]}
    for seq in spec["sequences"]:
        ids = torch.tensor(seq[: spec["length"]])[None]
        ref = capture(model, ids, spec["delta2"])
        for d in spec["delta1"]:
            sums[d] += deviation(capture(model, ids, d), ref) / len(spec["sequences"])
    for d in spec["delta1"]:
        mine = ours.get((name, d))
        ratio = mine / sums[d] if mine and sums[d] else float("nan")
        if name == "bf16" and d != spec["delta2"]: worst = max(worst, abs(ratio - 1))
        print(f"{name},{d},{mine},{sums[d]},{ratio:.4f}")
print(f"bf16 worst relative difference: {worst:.2%}")
