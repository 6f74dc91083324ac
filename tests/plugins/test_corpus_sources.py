"""Corpus sources and packing into windows, with the tiny model's real tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from featurelens.core.corpus.resolve import resolve_corpus
from featurelens.core.errors import FeaturelensError
from featurelens.core.extraction.packing import outlier_mask, pack, special_mask
from featurelens.core.host.protocols import Document
from featurelens.plugins.corpus_sources import (
    HFDatasetCorpus,
    JsonlCorpus,
    ParquetCorpus,
    StdlibCorpus,
    TextCorpus,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_text_folder_is_read_in_path_order_without_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / "c.md").write_text("third ü", encoding="utf-8")
    (tmp_path / ".hidden").write_text("never", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    docs = list(TextCorpus(str(tmp_path)))
    assert [d.text for d in docs] == ["first", "second", "third ü"]
    assert docs[1].ref.endswith("b/2.txt")
    before = TextCorpus(str(tmp_path)).fingerprint()
    (tmp_path / "a.txt").write_text("first, longer", encoding="utf-8")
    assert TextCorpus(str(tmp_path)).fingerprint() != before


def test_non_utf8_files_stop_with_the_file_name_or_are_skipped_and_counted(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(FeaturelensError, match=r"latin1.txt is not UTF-8 .*--skip-invalid"):
        list(TextCorpus(str(tmp_path)))
    corpus = TextCorpus(str(tmp_path), skip_invalid=True)
    assert [d.text for d in corpus] == ["fine"]
    assert corpus.skipped == 1


def test_jsonl_field_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"body": "one"}, {"body": "two"}]) + "\n")
    assert [d.text for d in JsonlCorpus(str(path), field="body")] == ["one", "two"]
    assert [d.ref for d in JsonlCorpus(str(path), field="body")] == [f"{path}#1", f"{path}#2"]
    with pytest.raises(FeaturelensError, match="line 1 has no text field 'text'.*--text-field"):
        list(JsonlCorpus(str(path)))
    path.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(FeaturelensError, match="line 2 is not valid JSON"):
        list(JsonlCorpus(str(path)))


def test_parquet_column_streams(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"content": ["alpha", None, "beta"], "n": [1, 2, 3]}), path)
    assert [d.text for d in ParquetCorpus(str(path), field="content")] == ["alpha", "beta"]
    with pytest.raises(FeaturelensError, match="no column 'text' \\(it has content, n\\)"):
        list(ParquetCorpus(str(path)))


def test_hf_save_to_disk_folder_is_read_without_datasets(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    table = pa.table({"text": ["from arrow", "second row"]})
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text("{}")
    assert [d.text for d in HFDatasetCorpus(str(folder))] == ["from arrow", "second row"]
    assert isinstance(resolve_corpus(str(folder)), HFDatasetCorpus)


def test_resolve_by_suffix_and_by_prefix(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "x.txt").write_text("a")
    assert isinstance(resolve_corpus(str(tmp_path / "x.jsonl")), JsonlCorpus)
    assert isinstance(resolve_corpus(str(tmp_path / "x.txt")), TextCorpus)
    assert isinstance(resolve_corpus(f"text:{tmp_path / 'x.jsonl'}"), TextCorpus)
    assert isinstance(resolve_corpus("stdlib"), StdlibCorpus)
    with pytest.raises(FeaturelensError, match="not stdlib, a source:location pair, or an existing path"):
        resolve_corpus(str(tmp_path / "nope"))


def test_stdlib_corpus_is_real_deterministic_and_skips_tests() -> None:
    first = [d for _, d in zip(range(5), StdlibCorpus(), strict=False)]
    again = [d for _, d in zip(range(5), StdlibCorpus(), strict=False)]
    assert [d.ref for d in first] == [d.ref for d in again]
    assert all(d.ref.endswith(".py") and "/test/" not in d.ref for d in first)
    assert StdlibCorpus().fingerprint() == StdlibCorpus().fingerprint()
    assert any('"""' in d.text for d in first)


def test_pack_windows_with_and_without_bos(tokenizer) -> None:
    docs = [Document("The quick brown fox jumps over the lazy dog 123 times.", "a"),
            Document("def add(a, b):\n    return (a + b) * [1, 2, 3]", "b")] * 3
    windows = list(pack(docs, tokenizer, context=8))
    assert windows and all(len(w.tokens) == 8 for w in windows)
    assert all(w.tokens[0] == tokenizer.bos_token_id for w in windows)
    assert [w.sequence_id for w in windows] == list(range(len(windows)))
    assert windows[0].document == "a"
    plain = list(pack(docs, tokenizer, context=8, prepend_bos=False))
    assert all(len(w.tokens) == 8 for w in plain)
    body = [t for w in plain for t in w.tokens]
    bos_body = [t for w in windows for t in w.tokens[1:]]
    assert body[:len(bos_body)] == bos_body[:len(body)]  # same token stream, cut differently
    # the document of each window is the one its first token came from
    flat_refs = []
    for doc in docs:
        n = len(tokenizer(doc.text, add_special_tokens=False)["input_ids"]) + 1
        flat_refs.extend([doc.ref] * n)
    assert [w.document for w in plain] == [flat_refs[i * 8] for i in range(len(plain))]
    assert len(list(pack(docs, tokenizer, context=8, max_windows=2))) == 2


def test_empty_corpus_and_too_short_context(tokenizer) -> None:
    with pytest.raises(FeaturelensError, match="fewer than 63 tokens"):
        list(pack([Document("tiny", "a")], tokenizer, context=64))
    with pytest.raises(FeaturelensError, match="too short"):
        list(pack([], tokenizer, context=1))


def test_special_and_outlier_masks(tokenizer) -> None:
    ids = torch.tensor([[tokenizer.bos_token_id, 10, tokenizer.eos_token_id, 11]])
    assert special_mask(ids, tokenizer.all_special_ids).tolist() == [[True, False, True, False]]
    acts = torch.ones(1, 4, 3)
    acts[0, 0] *= 50
    assert outlier_mask(acts, 10.0).tolist() == [[True, False, False, False]]
    assert not outlier_mask(acts, None).any()


def test_a_jsonl_line_nested_past_the_parser_is_one_sentence(tmp_path: Path) -> None:
    """A hostile corpus (issue 26, item 10): one line of 100,000 nested lists."""
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "fine"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    documents = iter(JsonlCorpus(str(path)))
    assert next(documents).text == "fine"
    with pytest.raises(FeaturelensError, match="line 2 is JSON nested too deeply"):
        next(documents)
