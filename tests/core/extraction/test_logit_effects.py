"""Logit effects: block-wise extremes equal a full top-k; chunks and feature subsets agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import featurelens
from extract_calls import extract_with
from featurelens.core.extraction.logit_effects import BLOCK, extremes, logit_effects
from featurelens.plugins.dictionaries.topk import TopKSAE


@pytest.mark.parametrize("width", [BLOCK * 40, BLOCK * 40 + 77, BLOCK * 3])
def test_extremes_equal_a_full_topk(width: int) -> None:
    generator = torch.Generator().manual_seed(width)
    logits = torch.randn(9, width, generator=generator)
    logits[0, 5 * BLOCK:5 * BLOCK + 30] += 10  # the top crowded in one block
    logits[1, -3:] -= 10  # the bottom in the ragged tail
    for largest in (True, False):
        values, ids = extremes(logits, 10, largest)
        expected = logits.topk(10, dim=1, largest=largest)
        assert torch.equal(values, expected.values)
        assert torch.equal(ids, expected.indices)  # no equal logits here: the same tokens too


def test_chunks_and_subsets_give_the_same_rows(tiny_backend) -> None:
    torch.manual_seed(0)
    sae = TopKSAE(tiny_backend.d_model, 300, k=4)
    whole = logit_effects(sae, tiny_backend, chunk=1000)
    small = logit_effects(sae, tiny_backend, chunk=7)
    assert whole is not None and small is not None
    for a, b in zip(whole, small, strict=True):
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-5)
    chosen = torch.tensor([3, 4, 150, 299])
    some = logit_effects(sae, tiny_backend, features=chosen, chunk=3)
    assert some is not None
    assert torch.equal(some[0][chosen], whole[0][chosen])
    others = torch.ones(300, dtype=torch.bool)
    others[chosen] = False
    assert bool((some[0][others] == -1).all()) and bool(some[1][others].isnan().all())


def test_fired_only_leaves_dead_features_without_effects(tiny_model_dir: Path, tmp_path: Path, tiny_backend) -> None:
    torch.manual_seed(1)
    sae = TopKSAE(tiny_backend.d_model, 400, k=2)  # 2 of 400 a token over a few windows: many never fire
    base = dict(hookpoint="blocks.1.hook_resid_post", model_obj=tiny_backend, dictionary_obj=sae, tokens=256,
                context=16, batch_size=4, progress=False, top_k=2, n_quantile=2, n_random=1)
    extract_with(store=tmp_path / "all.duckdb", **base)
    extract_with(store=tmp_path / "fired.duckdb", logit_effects="fired", **base)
    query = "SELECT feature, fire_count, top_logits, bottom_logit_values FROM features ORDER BY feature"
    with featurelens.open_store(tmp_path / "all.duckdb", read_only=True) as store:
        every = store.execute(query)
    with featurelens.open_store(tmp_path / "fired.duckdb", read_only=True) as store:
        fired = store.execute(query)
    assert any(row[1] == 0 for row in every) and any(row[1] > 0 for row in every)
    for full, only in zip(every, fired, strict=True):
        assert full[2] is not None
        assert only[2:] == (full[2:] if full[1] > 0 else (None, None))
