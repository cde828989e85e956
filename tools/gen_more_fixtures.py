"""More tiny HF reference checkpoints for ModelGen's parity tests (run on the H200 machine: python3 has torch and
transformers). Same layout as gen_hf_fixtures.py; packed fixtures also store `document_ids` [S] (0 = anchor).
Writes OUT/fixtures_more.tar.gz. Deterministic: seeds come from a fixed table, not Python's salted hash()."""
import os, json, tarfile, zlib, math, torch
from safetensors.torch import save_file
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)
OUT = os.environ.get("OUT", "/tmp/out"); root = "/tmp/fx_more"; os.makedirs(root, exist_ok=True)
print("transformers", transformers.__version__, "torch", torch.__version__)

def base(**kw):
    d = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=False,
             bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    theta = kw.pop("rope_theta", 10000.0); scaling = kw.pop("rope_scaling", None)
    rp = {"rope_type": "default", "rope_theta": theta}
    if scaling: rp.update(scaling)
    d["rope_parameters"] = rp; d.update(kw); return d

def seed_of(name): return zlib.crc32(name.encode()) % 10000

def make(name, cls, cfgcls, seq, extra=None, save_dtype=None, shard=None, **kw):
    try:
        cfg = cfgcls(**base(**kw))
        torch.manual_seed(seed_of(name))
        m = cls(cfg).float().eval()
        with torch.no_grad():
            for n, p in m.named_parameters():
                if "norm" in n: p.add_(0.1 * torch.randn_like(p))
                if n.endswith("bias"): p.normal_(0, 0.1)
            if save_dtype is not None:  # round the weights first so fp32 logits match the stored values exactly
                for p in m.parameters(): p.copy_(p.to(save_dtype).float())
        d = os.path.join(root, name); os.makedirs(d, exist_ok=True)
        src = m.to(save_dtype) if save_dtype is not None else m
        if shard: src.save_pretrained(d, safe_serialization=True, max_shard_size=shard)
        else: src.save_pretrained(d, safe_serialization=True)
        m = m.float()
        g = torch.Generator().manual_seed(seed_of(name) + 1)
        ids = torch.randint(3, cfg.vocab_size, (2, seq), generator=g); ids[:, 0] = cfg.bos_token_id
        inputs = dict(input_ids=ids); stored = {}
        if extra:
            more, stored = extra(ids); inputs.update(more)
        with torch.no_grad(): logits = m(**inputs).logits.float()
        t = {"input_ids": ids.contiguous(), "logits": logits.contiguous()}
        for k, v in inputs.items():
            if k != "input_ids": t[k] = v.contiguous()
        t.update({k: v.contiguous() for k, v in stored.items()})
        save_file(t, os.path.join(d, "expected.safetensors"))
        print(name, "ok", tuple(logits.shape), "rope", cfg.rope_parameters)
    except Exception as e:
        print(name, "FAILED", type(e).__name__, e)

def layout(S, bounds):
    doc = torch.zeros(S, dtype=torch.long)
    for i in range(len(bounds) - 1): doc[bounds[i]:bounds[i + 1]] = i + 1
    return doc

def mask4d(allowed, B):
    S = allowed.shape[0]; m = torch.zeros(S, S); m[~allowed] = torch.finfo(torch.float32).min
    return m[None, None].expand(B, 1, S, S).contiguous()

def packed(bounds, kind):
    def f(ids):
        B, S = ids.shape; b = bounds + [S]; doc = layout(S, b)
        q = torch.arange(S)[:, None]; k = torch.arange(S)[None, :]
        same = doc[:, None] == doc[None, :]
        if kind == "anchor": allowed = (k <= q) & (same | (doc[None, :] == 0))
        else: allowed = (k <= q) & same
        pos = torch.arange(S)
        if kind == "intradoc_reset":
            pos = torch.zeros(S, dtype=torch.long)
            for s, e in zip([0] + b[:-1], b): pos[s:e] = torch.arange(e - s)
        return ({"attention_mask": mask4d(allowed, B), "position_ids": pos[None].expand(B, S).contiguous()},
                {"document_ids": doc})
    return f

L, M, Q = (LlamaForCausalLM, LlamaConfig), (MistralForCausalLM, MistralConfig), (Qwen2ForCausalLM, Qwen2Config)
def main():
    # the unseen variants of the shared generator (own seeds)
    make("llama3_rope", *L, 200, rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0,
         "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    make("llama_linear", *L, 96, rope_scaling={"rope_type": "linear", "factor": 2.0})
    make("llama_yarn", *L, 160, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})
    make("qwen2_mha", *Q, 80, num_attention_heads=4, num_key_value_heads=4, hidden_size=96, intermediate_size=200,
         num_hidden_layers=3, rope_theta=1e6)
    make("mistral_anchor_packed", *M, 72, extra=packed([1, 20, 41], "anchor"), head_dim=32)
    # further RoPE variants and checkpoint shapes
    make("llama_dynamic", *L, 160, max_position_embeddings=64, rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    g = torch.Generator().manual_seed(7)
    make("llama_longrope", *L, 160, max_position_embeddings=256, rope_scaling={"rope_type": "longrope",
         "original_max_position_embeddings": 64,
         "short_factor": [round(1 + 0.1 * i, 3) for i in range(16)],
         "long_factor": [round(1 + 0.5 * i, 3) for i in range(16)]})
    make("qwen2_yarn_custom", *Q, 128, rope_theta=1e6, num_attention_heads=8, num_key_value_heads=2,
         rope_scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64,
                       "beta_fast": 16.0, "beta_slow": 2.0, "attention_factor": 1.2, "truncate": False})
    make("llama_headdim48_bias", *L, 64, head_dim=48, attention_bias=True, mlp_bias=True)
    make("mistral_swa_gqa", *M, 100, sliding_window=7, num_attention_heads=8, num_key_value_heads=2, head_dim=16)
    make("llama_bf16_weights", *L, 64, save_dtype=torch.bfloat16)
    make("llama_sharded", *L, 64, shard="600KB")
    make("llama_anchor_many_docs", *L, 128, extra=packed([1, 9, 10, 40, 77, 78, 101], "anchor"))
    make("llama_intradoc", *L, 96, extra=packed([1, 30, 31, 70], "intradoc"))
    make("qwen2_intradoc_reset", *Q, 96, tie_word_embeddings=True, extra=packed([1, 25, 60], "intradoc_reset"))

    # an older-style config.json (rope_theta + rope_scaling with "type") for the same weights as llama_linear
    src = os.path.join(root, "llama_linear")
    if os.path.isdir(src):
        dst = os.path.join(root, "llama_linear_legacy_config"); os.makedirs(dst, exist_ok=True)
        for f in os.listdir(src):
            if f != "config.json": os.system(f"cp {src}/{f} {dst}/{f}")
        c = json.load(open(os.path.join(src, "config.json")))
        rp = c.pop("rope_parameters"); c["rope_theta"] = rp.pop("rope_theta"); c["rope_scaling"] = {"type": rp.pop("rope_type"), **rp}
        c["transformers_version"] = "4.44.0"
        json.dump(c, open(os.path.join(dst, "config.json"), "w"), indent=2)
        # prove transformers itself reads it to the same logits
        e = __import__("safetensors.torch", fromlist=["load_file"]).load_file(os.path.join(dst, "expected.safetensors"))
        mm = LlamaForCausalLM.from_pretrained(dst, attn_implementation="eager").float().eval()
        with torch.no_grad(): err = (mm(input_ids=e["input_ids"]).logits - e["logits"]).abs().max().item()
        print("llama_linear_legacy_config reload max err", err)

    with tarfile.open(os.path.join(OUT, "fixtures_more.tar.gz"), "w:gz") as t:
        for n in sorted(os.listdir(root)): t.add(os.path.join(root, n), arcname=n)
    print("done")


if __name__ == "__main__":
    main()
