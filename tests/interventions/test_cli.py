"""featurelens steer, featurelens effects and extract --effects on a tiny random Llama."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import featurelens
from featurelens.testing import SAMPLE_TEXT

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def extracted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store with the identity dictionary of the tiny model extracted (once per module)."""
    from extract_calls import extract_with

    folder = tmp_path_factory.mktemp("steer-store")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(SAMPLE_TEXT * 6))
    result = extract_with(model=str(tiny_model_dir), hookpoint=HOOK, dictionary="identity", corpus=str(corpus),
                     tokens=256, context=16, batch_size=4, top_k=5, store=folder / "base.duckdb",
                     device="cpu", progress=False)
    return folder / "base.duckdb", result.dictionary_id


@pytest.fixture
def store_copy(extracted: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    target = tmp_path / "store.duckdb"
    shutil.copy(extracted[0], target)
    return target, extracted[1]


def test_steer_is_side_by_side_and_deterministic(cli, extracted, one_thread) -> None:
    store, did = extracted
    args = ["steer", "--dictionary", did, "--store", store, "--feature", "3=+6", "--feature", "5=0",
            "--prompt", "The quick brown", "--max-tokens", 8, "--samples", 2, "--seed", 4, "--device", "cpu"]
    first, second = cli(*args), cli(*args)
    assert first.exit_code == 0, first.output

    def shown(result) -> str:  # what steer printed: no model loader's progress bars before it
        assert result.output.startswith("prompt: "), result.output[:200]
        assert "Loading weights" not in result.output
        return result.output

    assert shown(first) == shown(second)
    assert "baseline" in first.output and "| steered" in first.output
    assert "sample 1" in first.output and "edits: 3=+6, 5=ablate" in first.output
    assert "most changed next-token probabilities" in first.output
    other = cli(*args[:-4], "--seed", 5, "--device", "cpu")
    assert shown(other) != shown(first)


def test_steer_says_no_change(cli, extracted, one_thread) -> None:
    store, did = extracted
    result = cli("steer", "--dictionary", did, "--store", store, "--feature", "3=+0", "--prompt", "The quick",
                 "--max-tokens", 4, "--temperature", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "no change: the edits moved no next-token probability" in result.output
    assert "+0.0000" not in result.output and "most changed" not in result.output


def test_steer_json_without_a_store(cli, tiny_model_dir, tmp_path, one_thread) -> None:
    import json

    result = cli("steer", "--dictionary", "identity", "--hookpoint", HOOK, "--model", tiny_model_dir,
                 "--store", tmp_path / "none.duckdb", "--feature", "2=clamp:3", "--prompt", "dog",
                 "--max-tokens", 4, "--temperature", 0, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["edits"] == ["2=clamp:3"] and len(data["baseline"]) == 1 and data["steered_tokens"] == 4
    assert not (tmp_path / "none.duckdb").exists()


@pytest.mark.parametrize("extra, message", [
    (["--feature", "99999=+1"], "Feature 99999 is out of range: the dictionary has 32 features"),
    (["--feature", "3=strong"], "The strength 'strong' of feature 3 is not a number"),
    (["--feature", "3=+1", "--dictionary", "nope"], "Unknown dictionary 'nope'"),
    (["--feature", "3=+1", "--dictionary", "identity", "--hookpoint", "blocks.7.hook_resid_post"],
     "names layer 7, but the model has 2 layers"),
    (["--feature", "3=+1", "--dictionary", "identity", "--hookpoint", "blocks.0.hook_nothing"],
     "Unknown hookpoint 'blocks.0.hook_nothing'"),
])
def test_steer_bad_input_is_one_sentence(cli, extracted, tiny_model_dir, extra, message) -> None:
    store, did = extracted
    args = ["steer", "--dictionary", did, "--store", store, "--prompt", "x", "--model", tiny_model_dir,
            "--device", "cpu"]
    result = cli(*args, *extra)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


def test_effects_command_stores_resumes_and_shows(cli, store_copy, one_thread) -> None:
    store, did = store_copy
    result = cli("effects", "--dictionary", did, "--store", store, "--limit", 6, "--windows", 3,
                 "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "of 6 feature(s)" in result.output
    with featurelens.open_store(store, read_only=True) as db:
        rows = db.sql("SELECT * FROM feature_effects ORDER BY feature").to_dicts()
    assert len(rows) == 6 and all(r["dictionary_id"] == did for r in rows)
    for row in rows:
        assert row["n_windows"] <= 3 and row["n_positions"] > 0
        assert 0 <= row["mean_kl"] <= row["max_kl"]
        assert len(row["promoted_tokens"]) == 10 == len(row["suppressed_deltas"])
        assert row["promoted_deltas"] == sorted(row["promoted_deltas"], reverse=True)
    again = cli("effects", "--dictionary", did, "--store", store, "--limit", 6, "--windows", 3,
                "--device", "cpu")
    assert "of 0 feature(s)" in again.output and "6 already stored" in again.output

    from featurelens.browser.links import ServerLinks
    from featurelens.browser.queries import BrowserData
    from featurelens.browser.render_feature import feature_page

    data = BrowserData(store)
    try:
        page = feature_page(data.feature(did, rows[0]["feature"]), ServerLinks())
        unmeasured = feature_page(data.feature(did, 20), ServerLinks())
    finally:
        data.close()
    assert "Ablation effects" in page and "mean KL" in page and "Logit effects" in page
    assert "Not measured" in unmeasured
    assert "No model is loaded" in page  # plain serve: the steering panel says why it cannot steer


def test_extract_with_effects(cli, tiny_model_dir, tmp_path, one_thread) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(SAMPLE_TEXT * 3))
    store = tmp_path / "s.duckdb"
    result = cli("extract", "--model", tiny_model_dir, "--hookpoint", HOOK, "--dictionary", "identity",
                 "--corpus", corpus, "--tokens", 96, "--context", 16, "--batch-size", 4, "--top-k", 2,
                 "--store", store, "--device", "cpu", "--effects")
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store, read_only=True) as db:
        measured = db.sql("SELECT count(*) AS n FROM feature_effects").item()
        fired = db.sql("SELECT count(*) AS n FROM features WHERE fire_count > 0").item()
    assert measured == fired > 0
