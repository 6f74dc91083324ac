"""The notebook API: a model and a dictionary by name, a prompt's per-token feature
activations as a polars frame, a store as a path or an open store; and the README's
notebook session, run as written (with the tiny model in place of SmolLM2)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
import torch

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create

ROOT = Path(__file__).resolve().parents[1]
HOOK = "blocks.1.hook_resid_post"
pytestmark = pytest.mark.usefixtures("one_thread")


def _saved_topk(folder: Path) -> Path:
    torch.manual_seed(0)
    create("dictionary_format", "saelens").save(create("dictionary_learner", "topk", 32, 64, k=4), str(folder))
    return folder


@pytest.fixture
def named_store(cli, tiny_model_dir: Path, tmp_path: Path) -> Path:
    """featurelens.duckdb in tmp_path with an imported dictionary "tiny-sae" and two explanations."""
    store = tmp_path / "featurelens.duckdb"
    folder = _saved_topk(tmp_path / "sae")
    done = cli("dictionaries", "import", folder, "--model", tiny_model_dir, "--hookpoint", HOOK,
               "--name", "tiny-sae", "--store", store, "--device", "cpu")
    assert done.exit_code == 0, done.output
    with featurelens.open_store(store) as db:
        db.insert("explanations", pa.table({
            "explanation_id": ["e1", "e2"], "dictionary_id": ["tiny-sae"] * 2,
            "feature": pa.array(list(range(2)), pa.int32()), "explainer": ["x"] * 2, "llm": ["y:z"] * 2,
            "text": ["feature zero", "feature one"]}))
    return store


def test_activations_match_the_dictionary_on_the_models_activations(tiny_backend, tmp_path: Path) -> None:
    sae = featurelens.load_dictionary(str(_saved_topk(tmp_path / "sae")), tiny_backend, hookpoint=HOOK)
    acts = featurelens.feature_activations(tiny_backend, sae, "def add(a, b): return a + b")
    assert acts.columns == ["position", "token", "token_id", "feature", "activation"]
    assert acts["feature"].dtype == pl.Int32 and (acts["activation"] > 0).all()
    ids = tiny_backend.tokenizer("def add(a, b): return a + b", add_special_tokens=False)["input_ids"]
    assert acts["position"].max() == len(ids)  # BOS at position 0
    x = tiny_backend.run(torch.tensor([[tiny_backend.tokenizer.bos_token_id] + ids]), [HOOK])[HOOK][0]
    dense = sae.encode(x)
    for row in acts.iter_rows(named=True):
        assert dense[row["position"], row["feature"]].item() == pytest.approx(row["activation"], rel=1e-5)
    assert int((dense > 0).sum()) == acts.height  # every active (token, feature), nothing else
    top1 = featurelens.feature_activations(tiny_backend, sae, "def add(a, b): return a + b", top=1)
    assert top1.group_by("position").len()["len"].max() == 1
    only = featurelens.feature_activations(tiny_backend, sae, "def add", features=[3, 5])
    assert set(only["feature"].to_list()) <= {3, 5}


def test_dictionary_by_name_from_a_path_or_an_open_store(named_store: Path, tiny_backend) -> None:
    by_path = featurelens.load_dictionary("tiny-sae", tiny_backend, store=named_store)
    with featurelens.open_store(named_store, read_only=True) as store:
        by_store = featurelens.load_dictionary("tiny-sae", tiny_backend, store=store)
        assert store.execute("SELECT 1") == [(1,)]  # still open: the caller's store is not closed
    assert by_path.dictionary_id == by_store.dictionary_id == "tiny-sae" and by_path.hookpoint == HOOK
    assert torch.equal(by_path.W_enc, by_store.W_enc)
    with pytest.raises(FeaturelensError, match="neither 'identity' nor an existing file"):
        featurelens.load_dictionary("no-such-name", tiny_backend, store=named_store)
    identity = featurelens.feature_activations(tiny_backend, "identity", "x = 1", hookpoint=HOOK)
    assert identity["feature"].max() < tiny_backend.d_model


def test_store_taking_functions_take_a_path_or_an_open_store(named_store: Path) -> None:
    from featurelens.jobs.run.job import summarize

    by_path = summarize(named_store, "tiny-sae")
    with featurelens.open_store(named_store, read_only=True) as store:
        assert summarize(store, "tiny-sae") == by_path


def test_readme_notebook_session_runs(named_store: Path, tiny_model_dir: Path, monkeypatch, capsys) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## From a notebook\n\n```python\n(.*?)```", readme, re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) <= 10
    code = block.replace('fl.load_model("smollm2")', f'fl.load_model({str(tiny_model_dir)!r}, device="cpu")')
    assert code != block
    monkeypatch.chdir(named_store.parent)  # the session opens ./featurelens.duckdb, as after `featurelens run`
    exec(compile(code, "README.md", "exec"), {"__name__": "__notebook__"})  # noqa: S102 - our own README
    out = capsys.readouterr().out
    assert "position" in out and "activation" in out and "text" in out
