"""`featurelens graph` end to end: an extracted set, a graph in the store, token-lookup labels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import featurelens
from tests.core.extraction.test_transcoder_set_extraction import write_ct_set

pytestmark = pytest.mark.usefixtures("one_thread")


def _start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "featurelens.testing.stub_server", "--latency", str(latency)],
                              stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    assert line.startswith("PORT "), line
    return server, f"http://127.0.0.1:{line.split()[1]}/v1"


def test_graph_command_stores_a_labelled_graph(cli, tiny_model_dir: Path, tmp_path: Path, store_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_ct_set(tmp_path / "ct")
    extracted = cli("extract", "--model", tiny_model_dir, "--dictionary", folder, "--store", store_path,
                    "--tokens", "512", "--context", "32", "--batch-size", "8", "--device", "cpu",
                    "--top-k", "3", "--quantile-examples", "2", "--random-examples", "2", "--split", "all")
    assert extracted.exit_code == 0, extracted.output
    with featurelens.open_store(store_path, read_only=True) as store:
        set_id = store.sql("SELECT dictionary_id FROM dictionaries")["dictionary_id"][0]
    # Named by its store id: the model and file come from the store.
    result = cli("graph", "--prompt", "The quick brown fox", "--transcoders", set_id, "--store", store_path,
                 "--device", "cpu", "--no-progress", "--max-logits", "2")
    assert result.exit_code == 0, result.output
    assert "replacement score" in result.output and "token lookup now" in result.output
    with featurelens.open_store(store_path, read_only=True) as store:
        graph = store.sql("SELECT * FROM graphs").row(0, named=True)
        assert graph["dictionary_id"] == set_id and 0 <= graph["replacement_score"] <= 1
        labelled = store.sql(
            "SELECT n.label, n.label_source, e.text FROM graph_nodes n JOIN explanations e "
            "ON e.dictionary_id = ? AND e.feature = n.feature WHERE n.kind = 'feature' AND n.label IS NOT NULL",
            [set_id])
        assert labelled.height > 0
        assert set(labelled["label_source"]) == {"token-lookup:offline:none"}
        assert (labelled["label"] == labelled["text"]).all()
        features = store.sql("SELECT count(*) AS n FROM graph_nodes WHERE kind = 'feature'")["n"][0]
        assert features > 0
    # Named by its folder, the set gets the id extraction gave it: the graph is the same one, replaced.
    again = cli("graph", "--prompt", "The quick brown fox", "--transcoders", folder, "--model", tiny_model_dir,
                "--store", store_path, "--device", "cpu", "--no-progress", "--max-logits", "2")
    assert again.exit_code == 0, again.output
    with featurelens.open_store(store_path, read_only=True) as store:
        assert store.sql("SELECT count(*) AS n FROM graphs")["n"][0] == 1
    # --label-nodes: the graph's features explained by an LLM (a loopback stub) and scored; the
    # scored LLM labels now win over the unscored token-lookup ones.
    server, base_url = _start_stub(0.0)
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "stub")
    try:
        labelled = cli("graph", "--prompt", "The quick brown fox", "--transcoders", set_id, "--store", store_path,
                       "--device", "cpu", "--no-progress", "--max-logits", "2", "--label-nodes",
                       "--llm", "openai:stub", "--scorer", "token-check")
    finally:
        server.kill()
        server.wait()
    assert labelled.exit_code == 0, labelled.output
    assert "explained:" in labelled.output and "scored (token-check)" in labelled.output
    with featurelens.open_store(store_path, read_only=True) as store:
        graph_features = store.sql("SELECT count(DISTINCT feature) AS n FROM graph_nodes WHERE kind = 'feature'")["n"][0]
        explained = store.sql("SELECT count(DISTINCT feature) AS n FROM explanations WHERE llm = 'openai:stub'")["n"][0]
        assert explained == graph_features  # exactly the graph's features, no others
        sources = store.sql("SELECT label_source, label_score FROM graph_nodes WHERE kind = 'feature' "
                            "AND label_source = 'token-activations:openai:stub'")
        assert sources.height > 0 and sources["label_score"].null_count() < sources.height


def test_graph_command_refuses_bad_input_in_one_sentence(cli, tiny_model_dir: Path, tmp_path: Path,
                                                        store_path: Path) -> None:
    result = cli("graph", "--prompt", "hi", "--transcoders", "nope", "--store", store_path)
    assert result.exit_code != 0 and "neither a dictionary id in the store" in result.output
    folder = write_ct_set(tmp_path / "ct")
    bad = cli("graph", "--prompt", "The quick", "--transcoders", folder, "--model", tiny_model_dir,
              "--store", store_path, "--target", " fox jumps over", "--device", "cpu", "--no-progress")
    assert bad.exit_code != 0 and "neither one token" in bad.output
    assert "Traceback" not in bad.output
