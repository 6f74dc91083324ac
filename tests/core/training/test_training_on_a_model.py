"""Training on a real model's activations (a tiny random Llama through the hf tiny_backend),
and the trained dictionary going straight into extraction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import featurelens
from featurelens.core.dictionaries.loading import load_dictionary
from featurelens.core.errors import FeaturelensError
from featurelens.core.training import ModelSource, train_dictionary

HOOK = "blocks.0.hook_resid_post"


pytestmark = pytest.mark.usefixtures("one_thread")




def test_model_source_is_deterministic_and_skips_special_tokens(tiny_backend) -> None:
    source = ModelSource(tiny_backend, HOOK, context=32, windows_per_chunk=2)
    chunks = source.chunks(0)
    first, _second, third = next(chunks), next(chunks), next(chunks)
    assert first.shape == (2 * 31, tiny_backend.d_model)  # BOS of each window left out
    assert torch.equal(next(source.chunks(2)), third)
    assert source.fingerprint() == ModelSource(tiny_backend, HOOK, context=32, windows_per_chunk=2).fingerprint()


def test_trained_sae_loads_and_extracts(tiny_backend, tmp_path: Path) -> None:
    fvus: list[float] = []
    result = train_dictionary(backend=tiny_backend, hookpoint=HOOK, output=tmp_path / "sae", expansion=4, k=8,
                              tokens=12_000, batch_size=256, lr=3e-3, buffer_rows=4096, progress=False,
                              device="cpu", dictionary_id="tiny-topk", callback=lambda s, m: fvus.append(m["fvu"]))
    assert fvus[-1] < 0.5 * fvus[0]
    assert (tmp_path / "sae" / "cfg.json").is_file()  # SAELens layout, what `featurelens run` looks for
    sae = load_dictionary(str(tmp_path / "sae"), backend=tiny_backend, hookpoint=HOOK)
    assert sae.architecture == "topk" and sae.hookpoint == HOOK and sae.model_id == tiny_backend.model_id
    x = torch.randn(5, tiny_backend.d_model)
    assert torch.allclose(sae.encode(x), result.dictionary.encode(x), atol=1e-5)

    from extract_calls import extract_with

    store = tmp_path / "store.duckdb"
    done = extract_with(hookpoint=HOOK, model=tiny_backend.model_id,
                   dictionary=str(tmp_path / "sae"), tokens=256, context=32, store=store, top_k=3,
                   n_quantile=2, n_random=2, progress=False, model_obj=tiny_backend)
    with featurelens.open_store(store, read_only=True) as db:
        n = db.execute("SELECT count(*) FROM features WHERE dictionary_id = ?", [done.dictionary_id])[0][0]
    assert n == 4 * tiny_backend.d_model


def test_transcoder_on_the_mlp(tiny_backend, tmp_path: Path) -> None:
    result = train_dictionary(backend=tiny_backend, hookpoint="blocks.0.ln2.hook_normalized",
                              hookpoint_out="blocks.0.hook_mlp_out", architecture="transcoder",
                              output=tmp_path / "tc", expansion=2, k=6, tokens=4096, batch_size=256,
                              lr=3e-3, buffer_rows=2048, progress=False, device="cpu",
                              options={"skip": True})
    tc = result.dictionary
    assert tc.is_transcoder and tc.config["hookpoint_out"] == "blocks.0.hook_mlp_out"
    loaded = load_dictionary(str(tmp_path / "tc"), backend=tiny_backend, hookpoint="blocks.0.ln2.hook_normalized")
    x = torch.randn(4, tiny_backend.d_model)
    assert torch.allclose(loaded(x), tc(x), atol=1e-5)


def test_transcoder_needs_an_output_hookpoint(tiny_backend, tmp_path: Path) -> None:
    with pytest.raises(FeaturelensError, match="pass --hookpoint-out"):
        train_dictionary(backend=tiny_backend, hookpoint=HOOK, architecture="transcoder", output=tmp_path / "x")
