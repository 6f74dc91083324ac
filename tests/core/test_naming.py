"""`train` and `dictionaries import` take --name; generated names are readable; extraction
finds a dictionary by its recorded name and keeps that name when given the folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import featurelens
from featurelens.core.dictionaries.naming import (
    check_name,
    layer_tag,
    readable_name,
    short_model,
)
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create

HOOK = "blocks.1.hook_resid_post"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_readable_parts() -> None:
    assert readable_name("smollm2", "blocks.6.hook_resid_post", "topk", "8x", "abcdef1234") == \
        "smollm2-l6-topk8x-abcdef12"
    assert short_model("/models/Qwen2.5-0.5B/") == "qwen2.5-0.5b" and short_model("EleutherAI/pythia-70m") == "pythia-70m"
    assert layer_tag("model.layers.3.mlp") == "l3" and layer_tag("embed") == "embed"
    assert check_name("my-sae_2.v1") == "my-sae_2.v1"
    for bad in ("", "has space", "identity", "../x", "a" * 101):
        with pytest.raises(FeaturelensError, match="cannot name a dictionary"):
            check_name(bad)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    from featurelens.testing import SAMPLE_TEXT

    path = tmp_path / "c.txt"
    path.write_text("\n".join(SAMPLE_TEXT * 4), encoding="utf-8")
    return path


def _extract(cli, model: Path, dictionary: str, corpus: Path, store: Path):
    return cli("extract", "--model", model, "--hookpoint", HOOK, "--dictionary", dictionary, "--corpus", corpus,
               "--tokens", 128, "--context", 16, "--batch-size", 4, "--top-k", 2, "--quantile-examples", 2,
               "--random-examples", 2, "--store", store, "--device", "cpu", "--split", "all")


def _train(cli, model: Path, out: Path, *extra: str):
    return cli("train", "--model", model, "--hookpoint", HOOK, "--output", out, "--expansion", "2", "--k", "4",
               "--tokens", "512", "--batch-size", "256", "--buffer-rows", "512", "--device", "cpu",
               "--context", "32", *extra)


def test_train_name_travels_with_the_folder_into_the_store(cli, tiny_model_dir: Path, tmp_path: Path,
                                                           corpus: Path) -> None:
    named = _train(cli, tiny_model_dir, tmp_path / "named", "--name", "tiny-run-1")
    assert named.exit_code == 0, named.output
    assert named.output.strip().endswith("as tiny-run-1.")
    assert json.loads((tmp_path / "named" / "training.json").read_text())["dictionary_id"] == "tiny-run-1"
    store = tmp_path / "s.duckdb"
    extracted = _extract(cli, tiny_model_dir, str(tmp_path / "named"), corpus, store)
    assert extracted.exit_code == 0 and "into dictionary tiny-run-1 " in extracted.output, extracted.output

    generated = _train(cli, tiny_model_dir, tmp_path / "generated")
    assert generated.exit_code == 0, generated.output
    name = re.search(r" as (\S+)\.$", generated.output.strip()).group(1)
    assert re.fullmatch(rf"{re.escape(short_model(str(tiny_model_dir)))}-l1-topk2x-[0-9a-f]{{8}}", name), name
    bad = _train(cli, tiny_model_dir, tmp_path / "bad", "--name", "no spaces please")
    assert bad.exit_code == 1 and "cannot name a dictionary" in bad.output and not (tmp_path / "bad").exists()


def test_import_name_is_found_by_extract_by_name_and_by_path(cli, tiny_model_dir: Path, tmp_path: Path,
                                                             corpus: Path) -> None:
    torch.manual_seed(0)
    folder = tmp_path / "sae"
    create("dictionary_format", "saelens").save(create("dictionary_learner", "topk", 32, 64, k=4), str(folder))
    store = tmp_path / "s.duckdb"
    imported = cli("dictionaries", "import", folder, "--model", tiny_model_dir, "--hookpoint", HOOK,
                   "--name", "imported-one", "--store", store, "--device", "cpu")
    assert imported.exit_code == 0 and "as imported-one." in imported.output, imported.output
    by_name = _extract(cli, tiny_model_dir, "imported-one", corpus, store)
    assert by_name.exit_code == 0 and "into dictionary imported-one " in by_name.output, by_name.output
    by_path = _extract(cli, tiny_model_dir, str(folder), corpus, store)
    assert by_path.exit_code == 0 and "dictionary imported-one" in by_path.output, by_path.output
    with featurelens.open_store(store, read_only=True) as db:
        assert db.execute("SELECT dictionary_id FROM dictionaries") == [("imported-one",)]
        assert db.execute("SELECT count(*) FROM features WHERE dictionary_id = 'imported-one'")[0][0] == 64

    other = tmp_path / "other.duckdb"
    generated = cli("dictionaries", "import", folder, "--model", tiny_model_dir, "--hookpoint", HOOK,
                    "--store", other, "--device", "cpu")
    name = re.search(r" as (\S+)\.$", generated.output.strip()).group(1)
    assert re.fullmatch(rf"{re.escape(short_model(str(tiny_model_dir)))}-l1-topk-64-[0-9a-f]{{8}}", name), name
