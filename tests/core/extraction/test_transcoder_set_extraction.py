"""A transcoder set is extracted as ONE dictionary: every layer's features side by side under
global indices, each feature's layer one SQL join away, activations equal to its layer's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import featurelens
from featurelens.core.transcoder_layout import FEATURE_LAYER_SQL, SetLayout
from graph_store import D_T, write_ct_set

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_import_records_the_layers(cli, tiny_model_dir: Path, tmp_path: Path, store_path: Path) -> None:
    folder = write_ct_set(tmp_path / "ct")
    result = cli("dictionaries", "import", folder, "--model", tiny_model_dir, "--store", store_path,
                 "--device", "cpu", "--name", "imported-set")
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        rows = store.sql("SELECT layer, feature_offset, d_sae, hookpoint, hookpoint_out FROM transcoder_layers "
                         "WHERE dictionary_id = 'imported-set' ORDER BY layer").to_dicts()
        architecture = store.sql("SELECT architecture FROM dictionaries").item()
    assert architecture == "transcoder_set"
    assert rows == [{"layer": 0, "feature_offset": 0, "d_sae": D_T, "hookpoint": "blocks.0.ln2.hook_normalized",
                     "hookpoint_out": "blocks.0.hook_mlp_out"},
                    {"layer": 1, "feature_offset": D_T, "d_sae": D_T, "hookpoint": "blocks.1.ln2.hook_normalized",
                     "hookpoint_out": "blocks.1.hook_mlp_out"}]


def test_a_ray_worker_reads_a_set_as_the_driver_does(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The sharded path's worker (a plain class; no Ray needed here) names the set and reduces
    a batch exactly as the in-process plan does."""
    from dataclasses import asdict

    import numpy as np

    from featurelens.core.extraction.extractor import ExtractSpec, prepare, settings_of
    from featurelens.core.extraction.state import ExtractionState
    from featurelens.scale.extract_worker import ShardReducer

    folder = write_ct_set(tmp_path / "ct")
    spec = ExtractSpec(hookpoint=None, model=str(tiny_model_dir), dictionary=str(folder), tokens=256, context=32,
                       batch_size=4, device="cpu", split="all")
    plan = prepare(spec)
    worker = ShardReducer({"model": spec.model, "backend": spec.backend, "dtype": spec.dtype, "device": "cpu",
                           "dictionary": spec.dictionary, "dictionary_name": None, "hookpoint": spec.hookpoint,
                           "context": spec.context, "batch_size": spec.batch_size, "include_special": False,
                           "exclude_outlier_norm": None, "settings": asdict(settings_of(spec))}, 1)
    assert worker.ids == (plan.lm.model_id, plan.dict_id) and worker.reduce.hookpoint == plan.hookpoint
    batch = next(plan.batches)
    mine = ExtractionState(plan.sae.d_sae, spec.context, plan.settings, plan.lm.device)
    plan.reduce(mine, batch)
    worker.reduce_shard(np.array([w.tokens for w in batch]), np.array([w.sequence_id for w in batch]),
                        index=0, carry=True)
    theirs = worker.carried.state
    assert torch.equal(mine.stats.fire_count, theirs.stats.fire_count) and int(mine.stats.fire_count.sum()) > 0
