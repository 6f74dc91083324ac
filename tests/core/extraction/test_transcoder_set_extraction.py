"""A transcoder set is extracted as ONE dictionary: every layer's features side by side under
global indices, each feature's layer one SQL join away, activations equal to its layer's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

import featurelens
from featurelens.core.transcoder_layout import FEATURE_LAYER_SQL, SetLayout

pytestmark = pytest.mark.usefixtures("one_thread")

D_T = 24


def write_ct_set(folder: Path, d_model: int = 32, n_layers: int = 2, seed: int = 0) -> Path:
    """A random circuit-tracer per-layer set for the tiny model (ReLU, biased to fire often)."""
    gen = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for layer in range(n_layers):
        save_file({"W_enc": torch.randn(D_T, d_model, generator=gen) / d_model**0.5,
                   "b_enc": torch.full((D_T,), 0.05), "W_dec": torch.randn(D_T, d_model, generator=gen) * 0.1,
                   "b_dec": torch.zeros(d_model)}, str(folder / f"layer_{layer}.safetensors"))
        names.append(f"layer_{layer}.safetensors")
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "model_kind": "transcoder_set", "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "hook_mlp_out", "transcoders": names}))
    return folder


def test_a_set_is_one_dictionary_with_layers_in_sql(cli, tiny_model_dir: Path, tmp_path: Path,
                                                    store_path: Path) -> None:
    folder = write_ct_set(tmp_path / "ct")
    result = cli("extract", "--model", tiny_model_dir, "--dictionary", folder, "--store", store_path,
                 "--tokens", "512", "--context", "32", "--batch-size", "8", "--device", "cpu",
                 "--top-k", "3", "--quantile-examples", "2", "--random-examples", "2", "--split", "all")
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        row = store.sql("SELECT dictionary_id, hookpoint, architecture, d_sae, config FROM dictionaries").row(0, named=True)
        assert row["architecture"] == "transcoder_set" and row["d_sae"] == 2 * D_T
        assert row["hookpoint"] == "blocks.*.ln2.hook_normalized"
        layout = SetLayout.from_config(row["config"])
        layers = store.sql(FEATURE_LAYER_SQL + " ORDER BY feature")
        assert layers["layer"].to_list() == [0] * D_T + [1] * D_T
        assert layers["local_feature"].to_list() == list(range(D_T)) * 2
        # a layer-1 feature's stored top example: its activation is layer 1's transcoder's, recomputed
        top = store.sql(f"""
            SELECT e.feature, e.max_activation, e.max_position, s.tokens FROM examples e
            JOIN sequences s USING (corpus_id, sequence_id)
            WHERE e.kind = 'top' AND e.rank = 0 AND e.feature >= {D_T} ORDER BY e.max_activation DESC LIMIT 1
        """).row(0, named=True)
    from featurelens.core.host.manager import create
    from featurelens.plugins.formats.transcoder_sets import CircuitTracerFormat

    backend = create("model_backend", "hf", str(tiny_model_dir), device="cpu")
    tset = CircuitTracerFormat().load(str(folder))
    ids = torch.tensor([top["tokens"]])
    acts = backend.run(ids, ["blocks.1.ln2.hook_normalized"])["blocks.1.ln2.hook_normalized"][0]
    layer, local = layout.to_local(top["feature"])
    assert layer == 1
    recomputed = tset.transcoder(1).encode(acts)[top["max_position"], local]
    assert float(recomputed) == pytest.approx(top["max_activation"], rel=1e-4)
    assert json.loads(row["config"])["transcoder_set"]["input_hook"] == "ln2.hook_normalized"


def test_a_single_dictionary_still_needs_a_hookpoint(cli, tiny_model_dir: Path, store_path: Path) -> None:
    result = cli("extract", "--model", tiny_model_dir, "--store", store_path, "--tokens", "64",
                 "--device", "cpu")
    assert result.exit_code != 0 and "pass --hookpoint" in result.output
