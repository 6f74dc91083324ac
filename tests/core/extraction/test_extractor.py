"""The extraction stage against a brute-force dense computation on a real tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from extract_calls import extract_with

import featurelens
from featurelens.core.dictionaries.base import Dictionary
from featurelens.core.errors import FeaturelensError
from featurelens.core.extraction.packing import pack
from featurelens.plugins.corpus_sources import TextCorpus
from featurelens.plugins.hf_backend import HFBackend

HOOK = "blocks.1.hook_resid_post"
CONTEXT = 16
BATCH = 4


class SparseDictionary(Dictionary):
    """A random ReLU dictionary whose per-feature biases make features fire rarely."""

    architecture = "testsparse"

    def __init__(self, d_in: int, d_sae: int, bias: torch.Tensor, seed: int = 0):
        super().__init__(d_in, d_sae)
        generator = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(torch.randn(d_in, d_sae, generator=generator))
        self.b = torch.nn.Parameter(bias.clone())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W + self.b)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W.T

    def decoder_directions(self) -> torch.Tensor:
        return self.W.T.detach()


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> HFBackend:
    return HFBackend(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from featurelens.testing import SAMPLE_TEXT

    folder = tmp_path_factory.mktemp("corpus")
    for i in range(12):
        lines = [SAMPLE_TEXT[(i + j) % len(SAMPLE_TEXT)].replace("1", str(i % 10)) for j in range(6)]
        (folder / f"doc{i:02d}.txt").write_text("\n".join(lines), encoding="utf-8")
    return folder


def _windows(backend: HFBackend, corpus_dir: Path, n: int) -> list:
    return list(pack(TextCorpus(str(corpus_dir)), backend.tokenizer, context=CONTEXT, max_windows=n))


def _dense(backend: HFBackend, dictionary: Dictionary, windows: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature activations [W, T, F] with special positions zeroed, batch by batch like the stage."""
    with torch.no_grad():
        return _dense_inner(backend, dictionary, windows)


def _dense_inner(backend: HFBackend, dictionary: Dictionary, windows: list) -> tuple[torch.Tensor, torch.Tensor]:
    outs, masks = [], []
    specials = torch.tensor(backend.tokenizer.all_special_ids)
    for start in range(0, len(windows), BATCH):
        ids = torch.tensor([w.tokens for w in windows[start:start + BATCH]])
        acts = backend.run(ids, [HOOK])[HOOK]
        f = dictionary.encode(acts.reshape(-1, acts.shape[-1])).reshape(*ids.shape, -1)
        keep = ~torch.isin(ids, specials)
        outs.append(f * keep[..., None])
        masks.append(keep)
    return torch.cat(outs), torch.cat(masks)


@pytest.fixture(scope="module")
def sparse_dictionary(backend: HFBackend, corpus_dir: Path) -> SparseDictionary:
    windows = _windows(backend, corpus_dir, 40)
    probe = SparseDictionary(backend.d_model, 48, torch.zeros(48))
    pre, keep = _dense(backend, probe, windows)
    levels = torch.linspace(0.9, 0.997, 48)
    flat = (pre.reshape(-1, 48)[keep.reshape(-1)])
    bias = torch.stack([-torch.quantile(flat[:, i], levels[i]) for i in range(48)])
    return SparseDictionary(backend.d_model, 48, bias)


@pytest.fixture(scope="module")
def extracted(backend, sparse_dictionary, corpus_dir, tmp_path_factory):
    from featurelens.core.extraction import extractor as pipeline

    store_path = tmp_path_factory.mktemp("store") / "s.duckdb"
    chunk, pipeline.FEATURE_CHUNK = pipeline.FEATURE_CHUNK, 10  # examples written in 5 chunks
    try:
        result = _extract_sparse(backend, sparse_dictionary, corpus_dir, store_path)
    finally:
        pipeline.FEATURE_CHUNK = chunk
    with featurelens.open_store(store_path, read_only=True) as store:
        tables = {t: store.sql(f"SELECT * FROM {t}") for t in ("features", "examples", "sequences", "runs")}
    return result, tables


def _extract_sparse(backend, sparse_dictionary, corpus_dir, store_path):
    return extract_with(hookpoint=HOOK, corpus=str(corpus_dir), split="all", tokens=40 * CONTEXT, store=store_path,
                     batch_size=BATCH, context=CONTEXT, top_k=5, n_quantile=8, quantile_bins_count=4,
                     n_random=6, progress=False, model_obj=backend, dictionary_obj=sparse_dictionary)


def test_statistics_match_brute_force(extracted, backend, sparse_dictionary, corpus_dir) -> None:
    result, tables = extracted
    windows = _windows(backend, corpus_dir, 40)
    dense, keep = _dense(backend, sparse_dictionary, windows)
    features = tables["features"].sort("feature")
    flat = dense.reshape(-1, 48)[keep.reshape(-1)]
    assert result.n_windows == 40 and result.n_tokens == int(keep.sum())
    assert features["n_tokens"].to_list() == [int(keep.sum())] * 48
    fire = (flat > 0).sum(0)
    assert features["fire_count"].to_list() == fire.tolist()
    assert torch.allclose(torch.tensor(features["density"].to_list()), fire / keep.sum(), atol=1e-12)
    for row in features.iter_rows(named=True):
        column = flat[:, row["feature"]]
        firing = column[column > 0]
        if firing.numel() == 0:
            assert row["max_activation"] is None and row["quantiles"] is None
            continue
        assert row["max_activation"] == pytest.approx(float(firing.max()), rel=1e-6)
        assert row["mean_activation"] == pytest.approx(float(firing.mean()), rel=1e-5)
        assert sum(row["histogram_counts"]) == firing.numel()
        assert row["histogram_edges"][0] == pytest.approx(float(firing.min()), rel=1e-6)
        assert row["histogram_edges"][-1] == pytest.approx(float(firing.max()), rel=1e-6)
        assert row["histogram_edges"] == sorted(row["histogram_edges"])
        quantiles = row["quantiles"]
        assert quantiles == sorted(quantiles)
        if firing.numel() >= 20:  # histogram quantiles are exact to within one 7.5 % bin
            exact = float(torch.quantile(firing, 0.5))
            assert quantiles[2] == pytest.approx(exact, rel=0.09)


def test_top_examples_are_the_true_top_windows(extracted, backend, sparse_dictionary, corpus_dir) -> None:
    _, tables = extracted
    windows = _windows(backend, corpus_dir, 40)
    dense, _ = _dense(backend, sparse_dictionary, windows)
    top = tables["examples"].filter(kind="top").sort("feature", "rank")
    for feature in range(48):
        rows = top.filter(feature=feature)
        window_max = dense[:, :, feature].amax(dim=1)
        expected = window_max.sort(descending=True).values[: min(5, int((window_max > 0).sum()))]
        assert rows["max_activation"].to_list() == pytest.approx(expected.tolist(), rel=1e-6)
        assert rows["sequence_id"].n_unique() == rows.height  # ties between equal windows go either way
        for row in rows.iter_rows(named=True):
            truth = dense[row["sequence_id"], :, feature]
            assert torch.allclose(torch.tensor(row["activations"]), truth, atol=1e-6)
            assert row["max_position"] == int(truth.argmax()) and row["max_position"] != 0  # never BOS


def test_quantile_and_random_examples(extracted, backend, sparse_dictionary, corpus_dir) -> None:
    _, tables = extracted
    windows = _windows(backend, corpus_dir, 40)
    dense, _ = _dense(backend, sparse_dictionary, windows)
    examples = tables["examples"]
    n_random_total = 0
    for feature in range(48):
        window_max = dense[:, :, feature].amax(dim=1)
        quantile = examples.filter(kind="quantile", feature=feature).sort("rank")
        assert quantile.height == min(8, int((window_max > 0).sum()))
        maxima = quantile["max_activation"].to_list()
        assert maxima == sorted(maxima) and quantile["quantile"].to_list() == sorted(quantile["quantile"].to_list())
        for row in quantile.iter_rows(named=True):
            assert window_max[row["sequence_id"]] == pytest.approx(row["max_activation"], rel=1e-6)
            assert row["quantile"] in range(4)
        random = examples.filter(kind="random", feature=feature)
        silent = int((window_max == 0).sum())
        assert random.height == min(6, silent)
        n_random_total += random.height
        for row in random.iter_rows(named=True):
            assert float(window_max[row["sequence_id"]]) == 0.0
            assert row["max_activation"] == 0.0 and set(row["activations"]) == {0.0}
        assert random["sequence_id"].n_unique() == random.height
    assert n_random_total > 0


def test_logit_effects_and_stored_sequences(extracted, backend, sparse_dictionary) -> None:
    _, tables = extracted
    features = tables["features"].sort("feature")
    logits = sparse_dictionary.decoder_directions() @ backend.unembedding(fold_final_norm=True)
    for feature in (0, 17, 47):
        expected_ids = logits[feature].topk(10).indices.tolist()
        expected = [backend.tokenizer.decode([i]) for i in expected_ids]
        assert features["top_logits"][feature].to_list() == expected
        lowest = logits[feature].topk(10, largest=False).indices.tolist()
        assert features["bottom_logits"][feature].to_list() == [backend.tokenizer.decode([i]) for i in lowest]
    sequences = tables["sequences"].sort("sequence_id")
    assert sequences["sequence_id"].to_list() == list(range(40))
    assert all(len(t) == CONTEXT and t[0] == backend.tokenizer.bos_token_id for t in sequences["tokens"].to_list())
    assert sequences["token_strs"][0][0] == backend.tokenizer.bos_token
    assert tables["runs"]["status"].to_list() == ["done"]


def test_identity_dictionary_and_rerun_is_a_no_op(backend, corpus_dir, tmp_path: Path) -> None:
    store_path = tmp_path / "id.duckdb"
    kwargs = dict(hookpoint="blocks.0.hook_mlp_out", corpus=str(corpus_dir), split="all", tokens=8 * CONTEXT,
                  store=store_path, batch_size=BATCH, context=CONTEXT, progress=False, model_obj=backend)
    first = extract_with(**kwargs)
    assert first.dictionary_id == f"identity:{backend.model_id}:blocks.0.hook_mlp_out"
    again = extract_with(**kwargs)
    assert again.already_done
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM features")[0][0] == backend.d_model
        row = store.execute("SELECT architecture, d_in, d_sae FROM dictionaries")[0]
        assert row == ("identity", backend.d_model, backend.d_model)
        assert store.execute("SELECT count(*) FROM models")[0][0] == 1


def test_outlier_positions_are_excluded(backend, corpus_dir, tmp_path: Path) -> None:
    kwargs = dict(hookpoint=HOOK, corpus=str(corpus_dir), split="all", tokens=8 * CONTEXT, batch_size=BATCH,
                  context=CONTEXT, progress=False, model_obj=backend, include_special=True)
    with_all = extract_with(store=tmp_path / "a.duckdb", **kwargs)
    excluded = extract_with(store=tmp_path / "b.duckdb", exclude_outlier_norm=1.05, **kwargs)
    assert 0 < excluded.n_tokens < with_all.n_tokens == 8 * CONTEXT


def _untouched(store_path: Path) -> bool:
    if not store_path.exists():
        return True
    with featurelens.open_store(store_path, read_only=True) as store:
        return all(store.execute(f"SELECT count(*) FROM {t}")[0][0] == 0
                   for t in ("runs", "sequences", "features", "examples"))


def test_bad_input_leaves_the_store_untouched(backend, corpus_dir, tmp_path: Path) -> None:
    store_path = tmp_path / "bad.duckdb"
    base = dict(hookpoint=HOOK, corpus=str(corpus_dir), split="all", tokens=8 * CONTEXT, store=store_path,
                batch_size=BATCH, context=CONTEXT, progress=False, model_obj=backend)
    wrong = SparseDictionary(backend.d_model + 1, 4, torch.zeros(4))
    with pytest.raises(FeaturelensError, match="width 33, but blocks.1.hook_resid_post of this model has width 32"):
        extract_with(**base, dictionary_obj=wrong)
    with pytest.raises(FeaturelensError, match="longer than"):
        extract_with(**{**base, "context": 10_000})
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(FeaturelensError, match="fewer than"):
        extract_with(**{**base, "corpus": str(empty)})
    assert _untouched(store_path)


def test_non_utf8_file_mid_corpus_rolls_back_committed_shards(backend, corpus_dir, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in sorted(corpus_dir.iterdir())[:4]:
        (mixed / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (mixed / "zz.txt").write_bytes(b"\xff\xfe broken")
    store_path = tmp_path / "mixed.duckdb"
    featurelens.open_store(store_path).close()
    with pytest.raises(FeaturelensError, match="zz.txt is not UTF-8"):
        extract_with(hookpoint=HOOK, corpus=str(mixed), split="all", tokens=200 * CONTEXT, store=store_path,
                batch_size=1, context=CONTEXT, progress=False, model_obj=backend, checkpoint_every=1)
    assert _untouched(store_path)
    assert not (tmp_path / ".mixed.duckdb.extract").exists()


def test_skip_invalid_counts_the_files_left_out(backend, corpus_dir, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in sorted(corpus_dir.iterdir())[:3]:
        (mixed / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (mixed / "doc00b.txt").write_bytes(b"\xff\xfe broken")
    result = extract_with(hookpoint=HOOK, corpus=str(mixed), split="all", tokens=200 * CONTEXT, store=tmp_path / "s.duckdb",
                     batch_size=BATCH, context=CONTEXT, progress=False, model_obj=backend, skip_invalid=True)
    assert result.skipped_files == 1 and 4 < result.n_windows < 200  # the whole corpus was read
