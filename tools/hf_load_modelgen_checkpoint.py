"""Loads a checkpoint that ModelGen wrote (model.safetensors + config.json) with transformers and saves reference
logits next to it as expected.safetensors, so `modelgen parity` can prove the round trip. Also reads the file with the
safetensors library itself. Usage: python3 tools/hf_load_modelgen_checkpoint.py DIR OUT_DIR"""
import sys, torch, transformers
from safetensors.torch import load_file, save_file
src, out = sys.argv[1], sys.argv[2]
tensors = load_file(f"{src}/model.safetensors")          # the reference reader accepts ModelGen's file
model = transformers.AutoModelForCausalLM.from_pretrained(src, attn_implementation="eager").float().eval()
missing = set(dict(model.named_parameters())) - set(tensors) - ({"lm_head.weight"} if model.config.tie_word_embeddings else set())
assert not missing, missing
ids = torch.randint(3, model.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(5)); ids[:, 0] = 1
with torch.no_grad(): logits = model(input_ids=ids).logits.float()
save_file({"input_ids": ids, "logits": logits.contiguous()}, f"{out}/expected.safetensors")
print(type(model).__name__, "loaded", len(tensors), "tensors; logits", tuple(logits.shape), "transformers", transformers.__version__)
