# ruff: noqa: F811 - the job fixture imported from scale_fixtures is redefined as a test argument
"""Hostile input to this round's command-line surfaces: ``--executor ray`` on extract, train,
explain, score and label (Ray missing, a dead or non-Ray ``--address``, absurd ``--workers``,
unknown executors) and ``featurelens estimate`` (empty selections, unknown providers,
option values of the wrong kind, stores it cannot read).

Every refusal must be one ``Error:`` sentence, a non-zero exit, no traceback, within
seconds, and must leave the store byte-identical (or not create one).
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from scale_fixtures import job  # noqa: F401 - fixture

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.ray.address import check_address, check_fits, check_workers
from featurelens.testing.planted_features import planted_records, write_planted_store

VOCABS = [Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "o200k_base.tiktoken",
          Path("/work/shared/data/o200k_base.tiktoken")]


# -- helpers -------------------------------------------------------------------------------

def _refused(result, *needles: str) -> None:
    """One ``Error:`` sentence (after any deprecation warning), non-zero exit, no traceback."""
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], result.output


def _snapshot(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _invoke_within(cli, seconds: float, *args):
    """Run the CLI on a thread; a command still running after ``seconds`` fails the test."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", cli(*args)), daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{args[0]} still running after {seconds:.0f} s: it hangs on a dead --address"
    assert "result" in box, "the command raised instead of printing one sentence"
    return box["result"], time.monotonic() - started


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


@pytest.fixture
def http_server():
    """Something that answers TCP but is not Ray: a plain HTTP server."""

    class Plain(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def labeled_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("labeled") / "store.duckdb"
    with featurelens.open_store(path) as store:
        write_planted_store(store, planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=2))
    return path


@pytest.fixture
def labeled_store(labeled_template: Path, store_path: Path) -> Path:
    """A planted store of this test's own (a copy: the tests check it is left untouched)."""
    shutil.copyfile(labeled_template, store_path)
    return store_path


@pytest.fixture
def o200k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken's o200k vocabulary as its own offline cache (estimate counts with it)."""
    from featurelens.llm import request_tokens

    source = next((p for p in VOCABS if p.is_file()), None)
    if source is None:
        pytest.skip("the o200k vocabulary (shared/data/o200k_base.tiktoken) is not on this machine")
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    shutil.copy(source, cache / "fb374d419588a4632f3f557e76b4b70aebbca790")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    request_tokens._encoding.cache_clear()
    yield
    request_tokens._encoding.cache_clear()


def _extract_args(job: dict, store: Path) -> list:
    return ["extract", "--model", job["model"], "--hookpoint", job["hookpoint"], "--dictionary", job["dictionary"],
            "--corpus", job["corpus"], "--tokens", 64, "--context", 16, "--device", "cpu", "--split", "all",
            "--store", store]


def _train_args(job: dict, output: Path) -> list:
    return ["train", "--model", job["model"], "--hookpoint", job["hookpoint"], "--corpus", job["corpus"],
            "--tokens", 256, "--context", 16, "--device", "cpu", "--d-sae", 32, "--k", 4, "-o", output]


def _label_args(command: str, store: Path) -> list:
    return [command, "--llm", "openai:gpt-4o-mini", "--no-batch-api", "--no-progress", "--store", store]


COMMANDS = ["extract", "train", "explain", "score", "label"]


def _args(command: str, job: dict, tmp_path: Path, labeled: Path) -> tuple[list, Path, Path | None]:
    """The command's arguments, the file or folder it would write, and its store (None: train)."""
    if command == "extract":
        return _extract_args(job, tmp_path / "extract.duckdb"), tmp_path / "extract.duckdb", tmp_path / "extract.duckdb"
    if command == "train":
        return _train_args(job, tmp_path / "sae"), tmp_path / "sae", None
    return _label_args(command, labeled), labeled, labeled


def _untouched(command: str, tmp_path: Path, target: Path, before: bytes | None) -> None:
    if command == "train":
        assert not target.exists() and not (tmp_path / ".sae.training").exists(), \
            sorted(p.name for p in tmp_path.iterdir())
    else:
        assert _snapshot(target) == before, "the refused command changed or created the store"


# -- Ray executor ------------------------------------------------------------------------

def test_address_check_is_fast_and_one_sentence(http_server) -> None:
    started = time.monotonic()
    with pytest.raises(FeaturelensError, match="No Ray cluster answers at --address"):
        check_address(f"127.0.0.1:{_closed_port()}")
    with pytest.raises(FeaturelensError, match="is not a Ray cluster"):
        check_address(http_server)
    with pytest.raises(FeaturelensError, match="is not HOST:PORT"):
        check_address("no-port-here")
    with pytest.raises(FeaturelensError, match="is not HOST:PORT"):
        check_address("127.0.0.1:99999")
    assert time.monotonic() - started < 20
    check_address(None)  # a local cluster: nothing to check


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", ["closed port", "not ray"])
def test_a_dead_address_fails_in_seconds(cli, job, tmp_path, labeled_store, http_server, command, where,
                                         monkeypatch) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only-1234567890")
    address = f"127.0.0.1:{_closed_port()}" if where == "closed port" else http_server
    args, target, _ = _args(command, job, tmp_path, labeled_store)
    before = _snapshot(target)
    result, took = _invoke_within(cli, 90, *args, "--executor", "ray", "--address", address)
    _refused(result, address)
    assert took < 45, f"{took:.0f} s to refuse a dead address"
    _untouched(command, tmp_path, target, before)


@pytest.mark.parametrize("command", COMMANDS)
def test_ray_not_importable_is_one_sentence(cli, job, tmp_path, labeled_store, command, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only-1234567890")
    args, target, _ = _args(command, job, tmp_path, labeled_store)
    before = _snapshot(target)
    result = cli(*args, "--executor", "ray")
    _refused(result, "needs Ray", "pip install 'featurelens[ray]'")
    _untouched(command, tmp_path, target, before)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("workers", ["0", "-1", "4096"])
def test_bad_worker_counts_are_refused_before_anything_starts(cli, job, tmp_path, labeled_store, command,
                                                              workers, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # refused before Ray would even be needed
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only-1234567890")
    args, target, _ = _args(command, job, tmp_path, labeled_store)
    before = _snapshot(target)
    result = cli(*args, "--executor", "ray", "--workers", workers)
    _refused(result, "--workers")
    _untouched(command, tmp_path, target, before)


def test_train_processes_refuses_more_workers_than_the_machine_can_run(cli, job, tmp_path) -> None:
    result = cli(*_train_args(job, tmp_path / "sae"), "--executor", "processes", "--workers", "100000")
    _refused(result, "--workers 100000", "CPU core")
    assert not (tmp_path / ".sae.training").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_executor_names_are_refused(cli, job, tmp_path, labeled_store, command) -> None:
    args, target, _ = _args(command, job, tmp_path, labeled_store)
    before = _snapshot(target)
    result = cli(*args, "--executor", "dask")
    assert result.exit_code == 2 and "'dask' is not one of" in result.output and "Traceback" not in result.output
    _untouched(command, tmp_path, target, before)


def test_workers_that_a_cluster_can_never_place_are_refused() -> None:
    check_fits({"CPU": 4.0}, 4, 1, 0)
    with pytest.raises(FeaturelensError, match="has 4 CPU"):
        check_fits({"CPU": 4.0}, 3, 2, 0)
    with pytest.raises(FeaturelensError, match="has 1 GPU"):
        check_fits({"CPU": 64.0, "GPU": 1.0}, 2, 1, 1)
    for bad in (0, -1, True, 2.5, "2"):
        with pytest.raises(FeaturelensError, match="--workers must be a positive integer"):
            check_workers(bad)


# -- featurelens estimate ----------------------------------------------------------------

def test_estimate_refuses_an_empty_selection(cli, labeled_store) -> None:
    before = _snapshot(labeled_store)
    for args in (("--where", "feature < 0"), ("--where", "feature < 0", "--features", "1000000")):
        _refused(cli("estimate", "--store", labeled_store, *args), "No features match")
    assert _snapshot(labeled_store) == before


def test_estimate_refuses_an_unknown_provider(cli, labeled_store) -> None:
    before = _snapshot(labeled_store)
    _refused(cli("estimate", "--store", labeled_store, "--llm", "nosuch:model"), "'nosuch'", "openai")
    _refused(cli("estimate", "--store", labeled_store, "--llm", "openai:"), "provider:model")
    assert _snapshot(labeled_store) == before


def test_estimate_takes_o_like_explain(cli, labeled_store, o200k) -> None:
    result = cli("estimate", "--store", labeled_store, "--llm", "openai:gpt-4o-mini", "-o", "window=16")
    assert result.exit_code == 0, result.output
    assert "deprecated" in result.output and "openai:gpt-4o-mini" in result.output


@pytest.mark.parametrize(("args", "needle"), [
    (("--option", "window=abc"), "window='abc'"),
    (("-o", "window=abc"), "window='abc'"),
    (("--option", "window=0"), "window=0"),
    (("--option", "window=-5"), "window=-5"),
    (("--option", "features_per_request=0"), "features_per_request=0"),
    (("--option", "features_per_request=1000"), "features_per_request=1000"),
    (("--option", "features_per_request=2.5"), "features_per_request=2.5"),
    (("--option", "features_per_request=abc"), "features_per_request='abc'"),
    (("-s", "window=abc"), "window='abc'"),
    (("-s", "ci_width=0"), "ci_width"),
    (("-s", "ci_width=3"), "ci_width"),
    (("-s", "ci_width=nan"), "ci_width"),
    (("-s", "round_windows=0"), "round_windows"),
    (("-s", "adaptive=maybe"), "adaptive"),
    (("--features", "0"), None),
    (("--sample", "-1"), None),
])
def test_estimate_refuses_bad_option_values(cli, labeled_store, args, needle) -> None:
    before = _snapshot(labeled_store)
    result = cli("estimate", "--store", labeled_store, "--llm", "openai:gpt-4o-mini", *args)
    if needle is None:  # click's own range check
        assert result.exit_code == 2 and "Traceback" not in result.output and "Invalid value" in result.output
    else:
        _refused(result, needle)
        assert "does not take" not in result.output  # the option exists; its value is what is wrong
    assert _snapshot(labeled_store) == before


def test_explain_refuses_an_option_value_of_the_wrong_kind(cli, labeled_store, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only-1234567890")
    before = _snapshot(labeled_store)
    for command, flag in (("explain", "--option"), ("score", "--option"), ("label", "-s")):
        result = cli(command, "--llm", "openai:gpt-4o-mini", flag, "window=abc", "--store", labeled_store)
        _refused(result, "window='abc'")
    assert _snapshot(labeled_store) == before


def test_estimate_refuses_stores_it_cannot_read(cli, labeled_store, tmp_path) -> None:
    missing = tmp_path / "missing.duckdb"
    _refused(cli("estimate", "--store", missing), "no feature store")
    assert not missing.exists()
    garbage = tmp_path / "garbage.duckdb"
    garbage.write_bytes(b"\x00not a database" * 400)
    _refused(cli("estimate", "--store", garbage), "not a DuckDB database")
    newer = tmp_path / "newer.duckdb"
    shutil.copy(labeled_store, newer)
    with duckdb.connect(str(newer)) as db:
        db.execute("INSERT INTO schema_migrations VALUES ('9999_future', now(), '99.0.0')")
    before = _snapshot(newer)
    _refused(cli("estimate", "--store", newer), "newer featurelens")
    assert _snapshot(newer) == before


@pytest.mark.parametrize("command", ["estimate", "explain", "score", "label"])
@pytest.mark.parametrize(("flag", "value"), [("--rpm", "nan"), ("--tpm", "nan"), ("--rpm", "inf"), ("--rpm", "0")])
def test_rate_limits_must_be_finite_and_positive(cli, labeled_store, command, flag, value) -> None:
    before = _snapshot(labeled_store)
    result = cli(command, "--store", labeled_store, flag, value)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"Invalid value for '{flag}'" in result.output
    assert _snapshot(labeled_store) == before


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"openai:gpt-4o-mini": {"input": "nan", "output": 0.6}}', "finite and not negative"),
    (b'{"openai:gpt-4o-mini": {"input": NaN, "output": 0.6}}', "finite and not negative"),
    (b'{"openai:gpt-4o-mini": {"input": -0.15, "output": 0.6}}', "finite and not negative"),
    (b'{"openai:gpt-4o-mini": {"input": 0.15, "output": 0.6, "batch_discount": 5}}', "(0 to 1)"),
    (b'{"openai:gpt-4o-mini": [0.15, 0.6]}', "needs numbers"),
    (b"\xff\xfe\x00garbage\x80", "not UTF-8"),
])
def test_estimate_refuses_price_tables_it_cannot_use(cli, labeled_store, tmp_path, content, needle) -> None:
    prices = tmp_path / "prices.json"
    prices.write_bytes(content)
    before = _snapshot(labeled_store)
    _refused(cli("estimate", "--store", labeled_store, "--llm", "openai:gpt-4o-mini", "--prices", prices), needle)
    assert _snapshot(labeled_store) == before


@pytest.mark.parametrize("command", ["explain", "score", "label"])
def test_batch_api_without_a_key_is_one_sentence(cli, labeled_store, command, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    before = _snapshot(labeled_store)
    result = cli(command, "--llm", "openai:gpt-4o-mini", "--batch-api", "--store", labeled_store)
    _refused(result, "OPENAI_API_KEY")
    assert _snapshot(labeled_store) == before


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_batch_threshold_must_be_a_positive_whole_number(cli, labeled_store, value) -> None:
    before = _snapshot(labeled_store)
    result = cli("explain", "--llm", "openai:gpt-4o-mini", "--batch-threshold", value, "--store", labeled_store)
    assert result.exit_code == 2 and "Invalid value for '--batch-threshold'" in result.output
    assert _snapshot(labeled_store) == before
