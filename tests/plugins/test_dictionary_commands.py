"""The dictionary CLI end to end on a tiny real model: train, import, eval, list, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from featurelens.plugins.formats.saelens import SAELensFormat
from featurelens.plugins.formats.sparsify import SparsifyFormat

HOOK = "blocks.1.hook_resid_post"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_eval_list_export(cli, tiny_model_dir: Path, tmp_path: Path, store_path: Path) -> None:
    out = tmp_path / "sae"
    args = ["train", "--model", tiny_model_dir, "--hookpoint", HOOK, "--output", out, "--expansion", "2",
            "--k", "4", "--tokens", "2048", "--batch-size", "256", "--buffer-rows", "1024", "--lr", "0.003",
            "--device", "cpu", "--context", "32"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "Trained topk (64 features) on 2048 tokens in 8 steps" in result.output
    again = cli(*args)
    assert again.exit_code == 0 and "Already trained" in again.output

    imported = cli("dictionaries", "import", out, "--model", tiny_model_dir, "--store", store_path, "--device", "cpu")
    assert imported.exit_code == 0, imported.output
    evaluated = cli("dictionaries", "eval", out, "--model", tiny_model_dir, "--store", store_path,
                    "--tokens", "128", "--context", "32", "--device", "cpu", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output[evaluated.output.index("{"):])
    assert set(metrics) >= {"l0", "fvu", "ce_loss_recovered", "kl_div", "dead_fraction", "dense_fraction"}
    listed = cli("dictionaries", "list", "--store", store_path, "--json")
    rows = json.loads(listed.output)
    assert len(rows) == 1 and rows[0]["hookpoint"] == HOOK and rows[0]["fvu"] == pytest.approx(metrics["fvu"])

    exported = cli("dictionaries", "export", out, "--to", "sparsify", "--output", tmp_path / "sp")
    assert exported.exit_code == 0, exported.output
    x = torch.randn(6, 32)
    a, b = SAELensFormat().load(str(out)), SparsifyFormat().load(str(tmp_path / "sp"))
    assert torch.allclose(a.encode(x), b.encode(x), atol=1e-5)


def test_bad_input_is_one_line(cli, tmp_path: Path) -> None:
    missing = cli("dictionaries", "export", tmp_path / "nothing", "--to", "saelens", "--output", tmp_path / "o")
    assert missing.exit_code == 1 and "does not exist" in missing.output and "Traceback" not in missing.output
    torch.manual_seed(0)
    from featurelens.core.host.manager import create

    SAELensFormat().save(create("dictionary_learner", "relu", 8, 16), str(tmp_path / "r"))
    unknown = cli("dictionaries", "export", tmp_path / "r", "--to", "nope", "--output", tmp_path / "o")
    assert unknown.exit_code == 1 and "No dictionary format is called 'nope'" in unknown.output
    readonly = cli("dictionaries", "export", tmp_path / "r", "--to", "gemma_scope", "--output", tmp_path / "o")
    assert readonly.exit_code == 1 and "does not write them" in readonly.output
    bad_option = cli("train", "--hookpoint", HOOK, "--output", tmp_path / "t", "--option", "oops",
                     "--model", tmp_path / "no-model")
    assert bad_option.exit_code == 1 and len(bad_option.output.strip().splitlines()) == 1
