"""One huge single-line document is tokenised in bounded pieces: 128 tokens from a 50 MB
line take seconds and well under 1 GB, and the pieces tokenise like the whole text."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from featurelens.core.extraction.packing import pack
from featurelens.core.extraction.text_chunks import cut_points, tokenize_in_chunks
from featurelens.core.host.protocols import Document


def _stdlib_text(chars: int) -> str:
    parts, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text)
        if total >= chars:
            break
    return "".join(parts)[:chars]


def test_pieces_cover_the_text_and_respect_the_limit():
    text = ("word " * 3000) + ("x" * 9000) + "  tail  \n end"
    spans = list(cut_points(text, 1000))
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(0 < end - start <= 1000 for start, end in spans)
    cut_at_space = [text[end] == " " and not text[end - 1].isspace() for _, end in spans[:-1]]
    assert sum(cut_at_space) >= 14  # the word stretch is cut only before spaces


def test_chunked_tokens_equal_whole_document_tokens(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    text = _stdlib_text(120_000)
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = [t for ids in tokenize_in_chunks(text, tokenizer, chunk_chars=2000) for t in ids]
    assert pieces == whole


def test_pack_stops_reading_once_it_has_its_windows():
    class CountingTokenizer:
        bos_token_id, eos_token_id = 1, 2

        def __init__(self):
            self.chars = 0

        def __call__(self, text, add_special_tokens=False):
            self.chars += len(text)
            return {"input_ids": [3 + (len(w) % 50) for w in text.split()]}

    tokenizer = CountingTokenizer()
    document = Document("abc " * 5_000_000, "big.txt")  # 20 MB, one line
    windows = list(pack([document], tokenizer, context=64, max_windows=2))
    assert [w.sequence_id for w in windows] == [0, 1]
    assert tokenizer.chars <= 2 * 65_536  # one or two pieces read, not 20 MB


PROBE = """
import json, sys, time
from featurelens.core.extraction import ExtractSpec, extract
import transformers.models.llama.modeling_llama, transformers.models.auto.tokenization_auto  # imports,
from transformers import AutoTokenizer, LlamaForCausalLM  # not reading the document, are not timed
model, corpus, store = sys.argv[1:4]
started = time.perf_counter()
result = extract(ExtractSpec(model=model, hookpoint="blocks.1.hook_resid_post", corpus=corpus, tokens=128,
                             context=64, batch_size=2, device="cpu", split="all"), store=store, progress=False)
seconds = time.perf_counter() - started
# VmHWM is this process's own peak: getrusage's ru_maxrss keeps the peak of the forked
# parent (pytest) across exec, so it reports the test runner's memory, not extract's.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "windows": result.n_windows if hasattr(result, "n_windows") else None,
                  "max_rss_mb": peak_kb / 1024}))
"""


@pytest.mark.slow
def test_50_mb_single_line_file_extracts_128_tokens_fast(tiny_model_dir: Path, tmp_path: Path):
    corpus = tmp_path / "one-line.txt"
    line = "The quick brown fox jumps over the lazy dog, and 42 (or 43) more words follow. "
    with open(corpus, "w", encoding="utf-8") as handle:
        handle.write(line * (50_000_000 // len(line) + 1))
    assert corpus.stat().st_size >= 50_000_000 and b"\n" not in corpus.read_bytes()[:1_000_000]
    out = subprocess.run([sys.executable, "-c", PROBE, str(tiny_model_dir), str(corpus),
                          str(tmp_path / "s.duckdb")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["seconds"] < 5, result
    assert result["max_rss_mb"] < 1024, result
