"""Honest evaluation: a recorded document-level train/held-out split (training never
reads a held-out document, extraction and evaluation default to them), a seeded
shuffle before packing, the learning rate used, and the splicing convention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import featurelens
from featurelens.core.corpus.split import held_out, split_corpus
from featurelens.core.dictionaries.evaluation import evaluate
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import Document
from featurelens.plugins.corpus_sources import StdlibCorpus, TextCorpus
from featurelens.plugins.dictionaries import TopKSAE

HOOK = "blocks.0.hook_resid_post"
pytestmark = pytest.mark.usefixtures("one_thread")


class Docs:
    """A corpus source over given documents (recording what was read)."""

    def __init__(self, n: int):
        self.docs = [Document(f"document number {i} " * 3, f"doc-{i}") for i in range(n)]

    def fingerprint(self) -> str:
        return f"docs-{len(self.docs)}"

    def __iter__(self):
        return iter(self.docs)


def test_split_is_disjoint_complete_and_stable() -> None:
    source = Docs(400)
    train = [d.ref for d in split_corpus(source, "train")]
    held = [d.ref for d in split_corpus(source, "heldout")]
    assert not set(train) & set(held) and len(train) + len(held) == 400
    assert 20 <= len(held) <= 60  # about a tenth
    assert held == [d.ref for d in split_corpus(source, "heldout")]  # same order every time
    assert sorted(held, key=lambda r: int(r[4:])) != held  # shuffled, not corpus order
    assert [d.ref for d in split_corpus(source, "all")] == [d.ref for d in source.docs]
    # Content decides, not position: reversing the corpus keeps every document's side.
    source.docs.reverse()
    assert set(d.ref for d in split_corpus(source, "heldout")) == set(held)
    assert split_corpus(source, "heldout").fingerprint() != split_corpus(source, "train").fingerprint()


def test_stdlib_is_shuffled_before_packing() -> None:
    first = [d.ref for _, d in zip(range(8), split_corpus(StdlibCorpus(), "heldout"), strict=False)]
    assert not all(r.startswith("_") for r in first)  # path order starts __future__, _aix_support, ...
    assert all(held_out(d.text) for _, d in zip(range(8), split_corpus(StdlibCorpus(), "heldout"), strict=False))


def test_an_empty_side_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("a single document", encoding="utf-8")
    side = "train" if held_out("a single document") else "heldout"
    with pytest.raises(FeaturelensError, match=f"has no {side} documents.*pass --split all"):
        list(split_corpus(TextCorpus(str(tmp_path)), side))
    with pytest.raises(FeaturelensError, match="--split 'test' is not a split"):
        split_corpus(TextCorpus(str(tmp_path)), "test")


def test_training_never_reads_held_out_documents(tiny_backend, tmp_path: Path, monkeypatch) -> None:
    from featurelens.core.extraction import packing
    from featurelens.core.training import train_dictionary

    read: list[str] = []
    original = packing.pack

    def spy(documents, *args, **kwargs):
        def tap():
            for d in documents:
                read.append(d.text)
                yield d
        return original(tap(), *args, **kwargs)

    monkeypatch.setattr(packing, "pack", spy)
    result = train_dictionary(backend=tiny_backend, hookpoint=HOOK, output=tmp_path / "sae", expansion=2, k=4,
                              tokens=2048, batch_size=256, buffer_rows=1024, progress=False, device="cpu")
    assert read and not any(held_out(text) for text in read)
    summary = json.loads((tmp_path / "sae" / "training.json").read_text())
    assert summary["config"]["lr"] is None  # not given ...
    assert summary["lr"] == pytest.approx(2e-4 / (2 * tiny_backend.d_model / 2 ** 14) ** 0.5)  # ... but recorded
    assert summary["data"]["split"] == "train" and summary["data"]["held_out_fraction"] == 0.1
    assert result.dictionary.config["lr"] == summary["lr"]
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["metadata"]["featurelens_training"]["lr"] == summary["lr"]


def test_extraction_records_and_reads_the_held_out_side(tiny_backend, tmp_path: Path) -> None:
    from extract_calls import extract_with

    sae = TopKSAE(tiny_backend.d_model, 64, k=4, hookpoint=HOOK)
    store = tmp_path / "s.duckdb"
    extract_with(hookpoint=HOOK, split="heldout", model=tiny_backend.model_id, tokens=256, context=32, store=store, top_k=2,
            n_quantile=2, n_random=2, progress=False, model_obj=tiny_backend, dictionary_obj=sae)
    with featurelens.open_store(store, read_only=True) as db:
        config = json.loads(db.execute("SELECT config FROM runs WHERE kind = 'extract'")[0][0])
        documents = [r[0] for r in db.execute("SELECT DISTINCT document FROM sequences")]
    assert config["split"]["split"] == "heldout" and config["split"]["seed"] == 0
    texts = {d.ref: d.text for d in StdlibCorpus()}
    assert documents and all(held_out(texts[ref]) for ref in documents)


def test_splice_convention_is_reported_and_changes_the_answer(tiny_backend) -> None:
    """'all' replaces BOS too: its zero ablation is the model with the hookpoint zeroed everywhere."""
    from featurelens.core.corpus.resolve import resolve_corpus
    from featurelens.core.extraction.packing import pack

    torch.manual_seed(0)
    sae = TopKSAE(tiny_backend.d_model, 64, k=4, hookpoint=HOOK)
    kwargs = dict(tokens=64, context=32, progress=False)
    special = evaluate(sae, tiny_backend, **kwargs)
    every = evaluate(sae, tiny_backend, splice="all", **kwargs)
    assert special["splice"] == "non-special" and every["splice"] == "all" and every["split"] == "heldout"
    assert special["ce_loss_clean"] == pytest.approx(every["ce_loss_clean"])
    assert special["ce_loss_zero_ablation"] != pytest.approx(every["ce_loss_zero_ablation"])
    windows = list(pack(split_corpus(resolve_corpus("stdlib"), "heldout"), tiny_backend.tokenizer,
                        context=32, max_windows=2))
    ids = torch.tensor([w.tokens for w in windows])
    logits = tiny_backend.logits_with_patch(ids, HOOK, torch.zeros_like).float()
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    assert every["ce_loss_zero_ablation"] == pytest.approx(float(ce), rel=1e-5)
    with pytest.raises(FeaturelensError, match="--splice 'some' is not a convention"):
        evaluate(sae, tiny_backend, splice="some", **kwargs)


def test_eval_command_stores_the_convention(cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    from featurelens.plugins.formats.saelens import SAELensFormat

    width = json.loads((tiny_model_dir / "config.json").read_text())["hidden_size"]
    SAELensFormat().save(TopKSAE(width, 4 * width, k=4, hookpoint=HOOK), str(tmp_path / "sae"))
    store = tmp_path / "s.duckdb"
    result = cli("dictionaries", "eval", tmp_path / "sae", "--model", tiny_model_dir, "--tokens", 64,
                 "--context", 32, "--splice", "all", "--store", store, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "splice  all" in result.output and "split  heldout" in result.output
    with featurelens.open_store(store, read_only=True) as db:
        metrics = json.loads(db.execute("SELECT metrics FROM dictionaries")[0][0])
    assert metrics["splice"] == "all" and metrics["split"] == "heldout"
    listed = json.loads(cli("dictionaries", "list", "--store", store, "--json").output)
    assert (listed[0]["splice"], listed[0]["split"]) == ("all", "heldout")
