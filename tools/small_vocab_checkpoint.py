#!/usr/bin/env python3
"""Writes a randomly initialized Llama checkpoint with a small byte-level BPE vocabulary, for `modelgen train --model DIR`.

The TinyLlama preset spends ~80% of its compute on GPT-2's 50K-token LM head; with the 400-token byte-level BPE of
tests/fixtures/tokenizers/bpe (vocabulary padded to 512) the same 4-layer body trains ~10x faster on a CPU, which is
what the RoPE study needs to see an attention sink form (docs/rope-bf16.md). Initialization is ModelGen's and
transformers' (initializer_range 0.02): matrices and embeddings N(0, 0.02^2), norm weights 1. Pure standard library.

    python3 tools/small_vocab_checkpoint.py OUT_DIR [--layers 4 --hidden 256 --heads 8 --kv-heads 4 --intermediate 688 --seed 0]
"""
import argparse, json, os, random, shutil, struct
from array import array

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--layers", type=int, default=4)
p.add_argument("--hidden", type=int, default=256)
p.add_argument("--heads", type=int, default=8)
p.add_argument("--kv-heads", type=int, default=4)
p.add_argument("--intermediate", type=int, default=688)
p.add_argument("--vocab", type=int, default=512)
p.add_argument("--max-positions", type=int, default=2048)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

here = os.path.dirname(os.path.abspath(__file__))
tokenizer = os.path.join(here, "..", "tests", "fixtures", "tokenizers", "bpe", "tokenizer.json")
os.makedirs(a.out, exist_ok=True)
shutil.copy(tokenizer, os.path.join(a.out, "tokenizer.json"))
with open(tokenizer) as f:
    tok = json.load(f)
eos = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<|endoftext|>")
assert max(tok["model"]["vocab"].values()) < a.vocab

head_dim = a.hidden // a.heads
config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": a.vocab, "hidden_size": a.hidden, "intermediate_size": a.intermediate,
    "num_hidden_layers": a.layers, "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": head_dim,
    "hidden_act": "silu", "max_position_embeddings": a.max_positions, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    # Like TinyLlama over GPT-2: no BOS, so <|endoftext|> (EOS) is the anchor of every packed window.
    "bos_token_id": None, "eos_token_id": eos, "torch_dtype": "float32", "attention_bias": False, "mlp_bias": False,
}
with open(os.path.join(a.out, "config.json"), "w") as f:
    json.dump(config, f, indent=2)

rng = random.Random(a.seed)
shapes = {"model.embed_tokens.weight": [a.vocab, a.hidden], "model.norm.weight": [a.hidden]}
for l in range(a.layers):
    pre = f"model.layers.{l}."
    shapes |= {
        pre + "input_layernorm.weight": [a.hidden], pre + "post_attention_layernorm.weight": [a.hidden],
        pre + "self_attn.q_proj.weight": [a.heads * head_dim, a.hidden], pre + "self_attn.k_proj.weight": [a.kv_heads * head_dim, a.hidden],
        pre + "self_attn.v_proj.weight": [a.kv_heads * head_dim, a.hidden], pre + "self_attn.o_proj.weight": [a.hidden, a.heads * head_dim],
        pre + "mlp.gate_proj.weight": [a.intermediate, a.hidden], pre + "mlp.up_proj.weight": [a.intermediate, a.hidden],
        pre + "mlp.down_proj.weight": [a.hidden, a.intermediate],
    }
header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
for name in sorted(shapes):
    shape = shapes[name]
    n = 1
    for s in shape: n *= s
    values = array("f", [1.0] * n) if name.endswith("norm.weight") else array("f", (rng.gauss(0.0, 0.02) for _ in range(n)))
    blob = values.tobytes()  # little-endian on every machine this runs on
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
    blobs.append(blob)
    offset += len(blob)
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for b in blobs: f.write(b)
print(f"wrote {a.out}: {a.layers} layers, hidden {a.hidden}, vocab {a.vocab}, anchor/EOS id {eos}")
