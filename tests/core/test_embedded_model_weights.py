"""The embedded SmolLM2 says what its weights are: dequantised from a Q4_1 GGUF, in
`models list` and in the store's models row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import featurelens
from featurelens.core.model.embedded import WEIGHTS_NOTE
from featurelens.plugins.dictionaries import TopKSAE


def test_models_list_says_dequantised_from_q4_1(cli) -> None:
    result = cli("models", "list")
    assert result.exit_code == 0
    assert "dequantised to float32 from the Q4_1-quantised GGUF SmolLM2-135M-Instruct.Q4_1.gguf" in result.output


def test_the_models_row_records_the_backends_provenance(tiny_backend, tmp_path: Path, monkeypatch) -> None:
    from extract_calls import extract_with

    monkeypatch.setattr(tiny_backend, "provenance", {"weights": WEIGHTS_NOTE}, raising=False)
    store = tmp_path / "s.duckdb"
    extract_with(hookpoint="blocks.0.hook_resid_post", tokens=64, context=32, store=store, top_k=1, n_quantile=1,
            n_random=1, progress=False, model_obj=tiny_backend,
            dictionary_obj=TopKSAE(tiny_backend.d_model, 32, k=2, hookpoint="blocks.0.hook_resid_post"))
    with featurelens.open_store(store, read_only=True) as db:
        config = json.loads(db.execute("SELECT config FROM models")[0][0])
    assert config["weights"] == WEIGHTS_NOTE


def test_a_local_model_has_no_such_note(tiny_backend) -> None:
    assert tiny_backend.provenance == {}


@pytest.mark.slow
def test_the_embedded_backend_carries_the_note() -> None:
    from featurelens.plugins.hf_backend import HFBackend

    assert "Q4_1" in HFBackend("smollm2", device="cpu").provenance["weights"]
