"""Makes two small real tokenizers for ModelGen's tests from the embedded corpus (run where the `sentencepiece` and
`tokenizers` Python packages are installed): a SentencePiece BPE model (tokenizer.model) and an HF byte-level BPE
tokenizer.json. Writes OUT/spm/tokenizer.model and OUT/bpe/tokenizer.json, plus expected.json with reference ids."""
import gzip, json, os, sentencepiece as spm
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
OUT = os.environ.get("OUT", "/tmp/out")
texts = [json.loads(l)["text"] for l in gzip.open("Runtime/Data/Corpus/python-reference.jsonl.gz", "rt")]
os.makedirs(f"{OUT}/spm", exist_ok=True); os.makedirs(f"{OUT}/bpe", exist_ok=True)
open("/tmp/corpus.txt", "w").write("\n".join(texts))
spm.SentencePieceTrainer.train(input="/tmp/corpus.txt", model_prefix=f"{OUT}/spm/tokenizer", vocab_size=400,
                               model_type="bpe", bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
bpe.save(f"{OUT}/bpe/tokenizer.json")
sample = 'The "if" statement is used for conditional execution.'
sp = spm.SentencePieceProcessor(model_file=f"{OUT}/spm/tokenizer.model")
json.dump({"text": sample, "spm_ids": sp.encode(sample), "bpe_ids": bpe.encode(sample).ids,
           "spm_vocab": sp.get_piece_size(), "bpe_vocab": bpe.get_vocab_size()}, open(f"{OUT}/expected.json", "w"))
print(open(f"{OUT}/expected.json").read())
