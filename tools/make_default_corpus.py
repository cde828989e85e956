"""Writes ModelGen's embedded default corpus: the topics of the Python Language Reference that CPython ships in
pydoc_data.topics (real English technical prose, PSF License), one document per topic, as gzipped JSON lines.
Run: python3 tools/make_default_corpus.py  (any CPython 3.11)."""
import gzip, json, sys, pydoc_data.topics as t
out = "Runtime/Data/Corpus/python-reference.jsonl.gz"
with gzip.GzipFile(out, "wb", mtime=0) as f:
    for name in sorted(t.topics):
        f.write((json.dumps({"id": name, "text": t.topics[name]}) + "\n").encode())
print(out, len(t.topics), "documents from Python", sys.version.split()[0])
