"""What the Neuronpedia export writes beyond the layout: visibility, the embeddings
layer's name, model names for work done without an LLM, explanation embeddings from a
(loopback) OpenAI embeddings endpoint, and upload-batch payloads sent to a loopback
server with the key from the environment only."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pytest
from neuronpedia_schema import load_source_folder, validate
from synthetic_store import fill_store

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.export.neuronpedia import upload
from featurelens.export.runner import export

SECRET = "np-secret-key-4242"


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=6)
    return path


def _source_folder(root: Path) -> Path:
    [model] = [p for p in (root / "v1").iterdir() if p.name != "config"]
    [folder] = list(model.iterdir())
    return folder


def test_visibility_and_embed_layer(small: Path, tmp_path: Path) -> None:
    with featurelens.open_store(small) as store:
        store.execute("UPDATE dictionaries SET hookpoint = 'hook_embed'")
    export(small, "neuronpedia", tmp_path / "np", visibility="UNLISTED")
    folder = _source_folder(tmp_path / "np")
    assert folder.name.startswith("e-")  # Neuronpedia's name for the embeddings layer
    assert validate(folder) == []
    t = load_source_folder(folder)
    assert {t[k][0]["visibility"] for k in ("SourceRelease", "Model", "SourceSet", "Source")} == {"UNLISTED"}
    assert {n["layer"] for n in t["Neuron"]} == {folder.name}


def test_offline_work_is_named_for_what_did_it(small: Path, tmp_path: Path) -> None:
    with featurelens.open_store(small) as store:
        with store.transaction():
            store.insert("explanations", pa.table({
                "explanation_id": ["tl-0"], "dictionary_id": ["smollm2-l6-topk"],
                "feature": pa.array(np.array([0], np.int32)), "explainer": ["token-lookup"],
                "llm": ["offline:none"], "text": ["the word cat"], "options": ["{}"]}))
            store.insert("scores", pa.table({
                "score_id": ["tl-0:embedding"], "explanation_id": ["tl-0"], "dictionary_id": ["smollm2-l6-topk"],
                "feature": pa.array(np.array([0], np.int32)), "scorer": ["embedding"], "llm": ["offline:none"],
                "score": [0.5], "status": ["ok"], "metrics": ["{}"],
                "n_parse_failures": pa.array(np.zeros(1, np.int32))}))
    export(small, "neuronpedia", tmp_path / "np")
    folder = _source_folder(tmp_path / "np")
    assert validate(folder) == []
    t = load_source_folder(folder)
    names = {e["explanationModelName"] for e in t["Explanation"]}
    assert "featurelens-token-lookup" in names and "none" not in names
    assert "all-minilm-l6-v2" in {s["explanationScoreModelName"] for s in t["ExplanationScore"]}


class _Server:
    """A loopback HTTP server answering with ``answer(path, headers, body) -> (status, json)``."""

    def __init__(self, answer: Any) -> None:
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.seen.append((self.path, headers, body))
                status, payload = answer(self.path, headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def server() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(answer: Any) -> _Server:
        servers.append(_Server(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _vector(text: str) -> list[float]:
    rng = np.random.default_rng(abs(hash(text)) % 2**32)
    v = rng.normal(size=256)
    return (v / np.linalg.norm(v)).tolist()


def test_explanation_embeddings_from_the_model_neuronpedia_searches_with(
        small: Path, tmp_path: Path, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        assert path == "/v1/embeddings" and body["model"] == "text-embedding-3-large" and body["dimensions"] == 256
        return 200, {"object": "list", "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1},
                     "data": [{"object": "embedding", "index": i, "embedding": _vector(t)}
                              for i, t in enumerate(body["input"])]}

    fake = server(answer)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(FeaturelensError, match="OPENAI_API_KEY"):
        export(small, "neuronpedia", tmp_path / "none", embeddings="openai")
    assert not (tmp_path / "none").exists() and not (tmp_path / "none.partial").exists()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    export(small, "neuronpedia", tmp_path / "np", embeddings="openai")
    folder = _source_folder(tmp_path / "np")
    assert validate(folder) == []
    rows = load_source_folder(folder)["Explanation"]
    assert rows and all(r["embedding"] == pytest.approx(_vector(r["description"]), abs=1e-6) for r in rows)
    assert fake.seen[0][1]["authorization"] == f"Bearer {SECRET}"
    assert not any(SECRET.encode() in p.read_bytes() for p in (tmp_path / "np").rglob("*") if p.is_file())


def test_upload_payloads_fit_the_route(small: Path, tmp_path: Path) -> None:
    export(small, "neuronpedia-upload", tmp_path / "up")
    [path] = upload.payloads(tmp_path / "up")
    body = json.loads(path.read_text())
    assert body["modelId"] == "smollm2-135m" and body["source"] == "6-smollm2-l6-topk"
    assert 1 <= len(body["features"]) <= upload.MAX_FEATURES
    assert len({f["index"] for f in body["features"]}) == len(body["features"])
    for f in body["features"]:
        assert f["activations"] and 0 <= f.get("density", 0) <= 1
        assert len(f["topLogits"]) <= 20 and len(f["bottomLogits"]) <= 20
        for a in f["activations"]:
            assert 1 <= len(a["tokens"]) == len(a["values"]) <= 1024
            if "quantileFraction" in a:
                assert 0 <= a["quantileFraction"] <= 1 and a["quantileMin"] < a["quantileMax"]
        for e in f["explanations"]:
            assert 1 <= len(e["text"]) <= 512 and (e["modelName"] or "").lower() == (e["modelName"] or "")
    assert sum(len(f["explanations"]) for f in body["features"]) > 0


def test_upload_dry_run_then_send_once(small: Path, tmp_path: Path, server: Any, cli: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    refuse = {"on": True}

    def answer(path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        if refuse["on"]:
            return 400, {"error": f"Invalid Explanation Model Names: smollm2 (key {headers['x-api-key']})"}
        return 200, {"message": f"{len(body['features'])} features created."}

    fake = server(answer)
    out = tmp_path / "up"
    monkeypatch.setenv(upload.KEY_ENV, SECRET)
    result = cli("export", "--format", "neuronpedia-upload", "-o", out, "--store", small,
                 "--send", fake.url, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"Would POST to {fake.url}/api/feature/upload-batch" in result.output
    assert "6 features" in result.output and "(to send)" in result.output
    assert SECRET not in result.output and fake.seen == []
    with pytest.raises(FeaturelensError) as refused:
        upload.send(out, fake.url)
    assert "HTTP 400" in str(refused.value) and "Invalid Explanation Model Names" in str(refused.value)
    assert SECRET not in str(refused.value)
    refuse["on"] = False
    assert upload.send(out, fake.url) == (1, 0)
    assert upload.send(out, fake.url) == (0, 1)  # accepted payloads are never sent twice
    sent = [s for s in fake.seen if s[0] == "/api/feature/upload-batch"]
    assert len(sent) == 2 and all(h["x-api-key"] == SECRET for _, h, _ in sent)
    assert SECRET not in upload.sent_log(out).read_text()
    monkeypatch.delenv(upload.KEY_ENV)
    with pytest.raises(FeaturelensError, match=upload.KEY_ENV):
        upload.send(out, fake.url)


def test_upload_format_rejects_embeddings_option(small: Path, tmp_path: Path) -> None:
    with pytest.raises(FeaturelensError, match="--embeddings applies to --format neuronpedia"):
        export(small, "neuronpedia-upload", tmp_path / "up", embeddings="openai")
