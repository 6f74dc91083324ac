"""``featurelens extract`` from the command line: success, resume message, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import featurelens
from featurelens.core.host.manager import create


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from featurelens.testing import SAMPLE_TEXT

    path = tmp_path_factory.mktemp("cli-corpus") / "c.jsonl"
    import json

    path.write_text("\n".join(json.dumps({"body": f"{i} {SAMPLE_TEXT[i % 4]}"}) for i in range(40)))
    return path


def _saved_topk(tmp_path: Path, d_in: int) -> Path:
    torch.manual_seed(0)
    sae = create("dictionary_learner", "topk", d_in, 64, k=4)
    folder = tmp_path / f"sae-{d_in}"
    create("dictionary_format", "saelens").save(sae, str(folder))
    return folder


def test_extract_with_a_saved_dictionary_then_rerun(cli, tiny_model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    args = ["extract", "--model", tiny_model_dir, "--hookpoint", "blocks.1.hook_resid_post",
            "--dictionary", _saved_topk(tmp_path, 32), "--corpus", corpus, "--text-field", "body",
            "--tokens", 320, "--context", 16, "--batch-size", 4, "--top-k", 5, "--store", store,
            "--split", "all"]  # the whole small corpus: 20 windows (its held-out tenth has fewer)
    result = cli(*args)
    assert result.exit_code == 0, result.output
    # 20 windows of 16 = 320 positions; BOS and document separators are not counted
    assert re.search(r"Extracted (\d+) tokens in 20 windows into dictionary topk-", result.output)
    n_tokens = int(re.search(r"Extracted (\d+)", result.output)[1])
    assert 250 < n_tokens <= 300
    with featurelens.open_store(store, read_only=True) as db:
        assert db.execute("SELECT count(*) FROM features")[0][0] == 64
        assert db.execute("SELECT architecture, d_sae, format FROM dictionaries")[0] == ("topk", 64, "saelens")
        # TopK with k=4: at most 4 features fire per token
        fired = db.execute("SELECT sum(fire_count) FROM features")[0][0]
        assert 0 < fired <= 4 * n_tokens
        assert db.execute("SELECT max(rank) FROM examples WHERE kind = 'top'")[0][0] <= 4
    again = cli(*args)
    assert again.exit_code == 0 and "Already extracted" in again.output


@pytest.mark.parametrize("change, message", [
    ({"--hookpoint": "blocks.0.hook_bogus"}, "Unknown hookpoint 'blocks.0.hook_bogus'"),
    ({"--model": "/no/such/model"}, "There is no model folder at /no/such/model"),
    ({"--dictionary": "/no/such/sae"}, "neither 'identity' nor an existing file"),
    ({"--context": "100000"}, "longer than"),
    ({"--corpus": "/no/such/corpus"}, "is not stdlib, a source:location pair"),
    ({"--text-field": "nope"}, "has no text field 'nope'"),
])
def test_bad_input_is_one_line_exit_1_and_no_store(cli, tiny_model_dir: Path, corpus: Path, tmp_path: Path,
                                                    change: dict, message: str) -> None:
    store = tmp_path / "bad.duckdb"
    options = {"--model": str(tiny_model_dir), "--hookpoint": "blocks.1.hook_resid_post",
               "--corpus": str(corpus), "--text-field": "body", "--tokens": "64", "--context": "16",
               "--store": str(store), **change}
    result = cli("extract", *[x for pair in options.items() for x in pair])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output
    assert not store.exists()


def test_dictionary_width_mismatch_is_one_sentence(cli, tiny_model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "w.duckdb"
    result = cli("extract", "--model", tiny_model_dir, "--hookpoint", "blocks.1.mlp.hook_post",
                 "--dictionary", _saved_topk(tmp_path, 32), "--corpus", corpus, "--text-field", "body",
                 "--tokens", 64, "--context", 16, "--store", store)
    assert result.exit_code == 1
    assert "reads vectors of width 32, but blocks.1.mlp.hook_post of this model has width 64" in result.output
    assert not store.exists()
