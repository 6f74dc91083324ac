"""One long single-line document: the first windows from chunked tokenisation vs tokenising
the whole document first (what packing did before), each in a fresh process.

    python benchmarks/long_document.py [--mb 5] [--tokens 128] [--model DIR]

Writes a one-line file of ``--mb`` megabytes, then in separate subprocesses (so peak
memory is each approach's own) packs ``--tokens`` tokens of 64-token windows with the
real tokenizer of ``--model`` (default: a tiny Llama with a trained byte-level BPE made
on the spot). Prints seconds and peak RSS for both, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from transformers import AutoTokenizer
from featurelens.core.extraction.packing import pack
from featurelens.core.host.protocols import Document
mode, model, corpus, tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(model)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
text = open(corpus, encoding="utf-8").read()
if mode == "whole":  # the previous behaviour: the whole document's ids before any window
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    windows = [ids[i:i + 63] for i in range(0, min(len(ids), tokens), 63)]
else:
    windows = list(pack([Document(text, corpus)], tokenizer, context=64, max_windows=-(-tokens // 64)))
print(json.dumps({"seconds": time.perf_counter() - started, "windows": len(windows),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "base_mb": base / 1024}))
"""


def _run(mode: str, model: str, corpus: Path, tokens: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, model, str(corpus), str(tokens)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from featurelens.testing import make_tiny_llama

            model = str(make_tiny_llama(Path(tmp) / "tiny"))
        corpus = Path(tmp) / "one-line.txt"
        line = "The quick brown fox jumps over the lazy dog, and 42 (or 43) more words follow. "
        corpus.write_text(line * int(args.mb * 1e6 / len(line) + 1), encoding="utf-8")
        chunked = _run("chunked", model, corpus, args.tokens)
        whole = _run("whole", model, corpus, args.tokens)
    print(f"one-line document of {args.mb:g} MB, first {args.tokens} tokens in 64-token windows")
    for name, r in (("chunked (featurelens)", chunked), ("whole document first", whole)):
        print(f"  {name:22s}: {r['seconds']:7.2f} s, peak RSS {r['peak_mb']:7.0f} MB "
              f"({r['peak_mb'] - r['base_mb']:6.0f} MB above the loaded tokenizer)")
    print(f"  ratio time whole / chunked = {whole['seconds'] / chunked['seconds']:.1f}")
    print(f"  ratio peak RSS whole / chunked = {whole['peak_mb'] / chunked['peak_mb']:.1f}"
          f" (corpus {args.mb:g} MB)")


if __name__ == "__main__":
    main()
