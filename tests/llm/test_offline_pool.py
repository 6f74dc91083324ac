"""Offline labeling over worker processes (featurelens/llm/offline_pool): the workers label,
this process writes, and the store ends up exactly as a run in one process leaves it:
same rows, same failures, same counters, resumed the same way after a kill."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import ParseError
from featurelens.core.selection import RecordTables
from featurelens.labelers.explain import ExplainSpec, ExplainStage, explain_features
from featurelens.llm import offline
from featurelens.llm import offline_pool as pool_module
from featurelens.llm.engine import EngineSettings
from featurelens.llm.offline_pool import MIN_FEATURES, OfflinePool, pool_processes
from featurelens.llm.offline_pool.messages import answered, decode, encode, outcome, pack, unpack
from featurelens.scorers.score_jobs import ScoreSpec, score_features

EXPLAIN = ExplainSpec("offline:none", "token-lookup")
SCORE = ScoreSpec("offline:none", "token-check", explainer="token-lookup")
N = 120


def _settings(processes: int) -> EngineSettings:
    return EngineSettings(progress=False, processes=processes)


@pytest.fixture
def small_pages(monkeypatch):
    """Pages of 16 features, so a small store spreads over both workers and many pages."""
    monkeypatch.setattr(offline, "OFFLINE_CHUNK", 16)


@pytest.fixture
def hostile(tmp_path):
    """A store with what a real one holds besides plain features: a dead feature, a fired
    feature whose examples are gone, a window whose activations hold a null."""
    path = tmp_path / "base.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=N)
        store.execute("DELETE FROM explanations")
        store.execute("UPDATE features SET fire_count = 0, density = 0 WHERE feature = 3")
        store.execute("DELETE FROM examples WHERE feature IN (3, 7)")
        store.execute("UPDATE examples SET activations = list_concat([NULL::FLOAT], activations[2:]) "
                      "WHERE feature = 11 AND kind = 'quantile'")
    return path


@pytest.fixture
def pages_answered(monkeypatch) -> list[int]:
    """How many jobs each page the workers answered held (empty: no workers ran)."""
    answered_pages: list[int] = []
    real = OfflinePool.answers

    def counting(self, pages):
        for context, results in real(self, pages):
            answered_pages.append(len(results))
            yield context, results

    monkeypatch.setattr(OfflinePool, "answers", counting)
    return answered_pages


def _label(path, processes: int):
    with featurelens.open_store(path) as store:
        explained = explain_features(store, EXPLAIN, settings=_settings(processes))
        scored = score_features(store, SCORE, settings=_settings(processes))
    return explained, scored


def _rows(path) -> dict[str, list[tuple]]:
    with featurelens.open_store(path, read_only=True) as store:
        return {
            "explanations": store.execute("SELECT explanation_id, dictionary_id, feature, explainer, llm, text, "
                                          "options FROM explanations ORDER BY ALL"),
            "scores": store.execute("SELECT score_id, explanation_id, feature, scorer, llm, score, status, metrics, "
                                    "details, options, n_parse_failures, n_windows, ci_low, ci_high FROM scores "
                                    "ORDER BY ALL"),
            "failures": store.execute("SELECT stage, dictionary_id, feature, method, reason, resolved_at IS NULL "
                                      "FROM failures ORDER BY ALL"),
        }


def _counters(stats) -> tuple:
    return stats.jobs, stats.succeeded, stats.failed, stats.skipped, stats.never_fired


def test_workers_store_exactly_what_one_process_stores(hostile, tmp_path, small_pages, pages_answered):
    alone, workers = tmp_path / "alone.duckdb", tmp_path / "workers.duckdb"
    shutil.copy(hostile, alone)
    shutil.copy(hostile, workers)
    one = _label(alone, 1)
    assert pages_answered == []
    two = _label(workers, 2)
    assert sum(pages_answered) == 2 * (N - 1) - 1 and len(pages_answered) > 8  # explain, then score
    assert [_counters(s) for s in one] == [_counters(s) for s in two]
    rows = _rows(workers)
    assert rows == _rows(alone)
    assert len(rows["explanations"]) == N - 2  # the dead feature skipped, feature 7 failed
    failed = {(stage, feature) for stage, _, feature, *_ in rows["failures"]}
    assert ("explain", 7) in failed and ("score:token-check", 11) in failed


def test_a_rerun_with_workers_skips_what_is_stored(hostile, small_pages):
    with featurelens.open_store(hostile) as store:
        first = explain_features(store, ExplainSpec("offline:none", "token-lookup", where="feature < 40"),
                                 settings=_settings(2))
        again = explain_features(store, EXPLAIN, settings=_settings(2))
        count = store.execute("SELECT count(*), count(DISTINCT explanation_id) FROM explanations")[0]
    assert first.succeeded == 38  # 40 less the dead one and the one without examples
    assert again.skipped == 38 and again.succeeded == N - 40  # feature 7 fails again
    assert count[0] == count[1] == N - 2


def test_a_worker_killed_mid_run_stops_the_stage_and_a_rerun_finishes_it(hostile, tmp_path, small_pages,
                                                                          monkeypatch):
    reference = tmp_path / "reference.duckdb"
    shutil.copy(hostile, reference)
    _label(reference, 1)
    real = OfflinePool._result
    calls = []

    def kill_after_two_pages(self, context, index):
        calls.append(index)
        if len(calls) == 3:
            os.kill(self.workers[index][0].pid, signal.SIGKILL)
        return real(self, context, index)

    monkeypatch.setattr(OfflinePool, "_result", kill_after_two_pages)
    with featurelens.open_store(hostile) as store:
        with pytest.raises(FeaturelensError, match="worker process ended .*run the command again to resume"):
            explain_features(store, EXPLAIN, settings=_settings(2))
        kept = store.execute("SELECT count(*) FROM explanations")[0][0]
    assert 0 < kept < N - 2
    monkeypatch.setattr(OfflinePool, "_result", real)
    _label(hostile, 2)
    assert _rows(hostile) == _rows(reference)


def test_workers_end_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = {sys.path!r}
        from featurelens.llm.offline_pool import OfflinePool
        from featurelens.scorers.score_jobs import ScoreSpec, ScoreStage
        pool = OfflinePool(ScoreStage.pages, ScoreSpec("offline:none", "token-check").config(), None, (), 2)
        print(" ".join(str(process.pid) for process, _ in pool.workers), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """))
    parent = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    pids = [int(pid) for pid in parent.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_closing_the_pool_ends_its_workers():
    with OfflinePool(ExplainStage.pages, EXPLAIN.config(), None, (), 2) as pool:
        processes = [process for process, _ in pool.workers]
        assert all(process.poll() is None for process in processes)
    assert all(process.returncode is not None for process in processes)


def test_workers_that_cannot_start_leave_the_stage_in_this_process(hostile, monkeypatch):
    started = []
    monkeypatch.setattr(pool_module.OfflinePool, "__init__",
                        lambda self, *a, **k: started.append(a) or (_ for _ in ()).throw(
                            pool_module.PoolUnavailable("no such scorer")))
    with featurelens.open_store(hostile) as store:
        stats = explain_features(store, EXPLAIN, settings=_settings(2))
    assert started and stats.succeeded == N - 2


def test_components_registered_in_this_process_only_are_not_sent_to_workers():
    class Local:
        needs_llm = False

    from featurelens.core.host import manager

    class Plugin:
        featurelens_api = 1

        @staticmethod
        @featurelens.hookimpl
        def register_scorers(register):
            register("local-only", Local)

    manager._HOST = manager.build_host(extra_plugins=[("local-plugin", Plugin)])
    assert pool_processes(Local(), "scorer", "local-only", {}, 10**6, 4) == 1
    builtin = manager.get_registry().get("scorer", "token-check").create()
    assert pool_processes(builtin, "scorer", "token-check", {}, 10**6, 4) == 4


def test_workers_by_default_only_from_min_features(monkeypatch):
    from featurelens.scorers.token_check import TokenCheckScorer

    monkeypatch.setattr(pool_module, "cores", lambda: 2)
    scorer = TokenCheckScorer()
    assert pool_processes(scorer, "scorer", "token-check", {}, MIN_FEATURES - 1) == 1
    assert pool_processes(scorer, "scorer", "token-check", {}, MIN_FEATURES) == 2
    assert pool_processes(scorer, "scorer", "token-check", {}, 10, requested=3) == 3
    assert pool_processes(scorer, "scorer", "token-check", {"x": object()}, 10**6, 3) == 1  # not JSON


def test_components_that_need_an_llm_or_the_store_stay_here():
    from featurelens.core.host.manager import get_registry

    simulation = get_registry().get("scorer", "simulation").create()
    assert pool_processes(simulation, "scorer", "simulation", {}, 10**6, 4) == 1
    spec = ScoreSpec("offline:none", "embedding")
    from featurelens.scorers.score_jobs import ScoreStage

    assert ScoreStage.prepare(spec).processes(10**6, 4) == 1  # it reads stored vectors itself


def test_page_messages_round_trip_and_refuse_damage():
    tables = RecordTables(pa.table({"feature": pa.array([1, 2], pa.int32())}),
                          pa.table({"activations": [[0.5, float("nan")], None]}),
                          pa.table({"token_strs": [["a", "é"]]}))
    header = {"keys": [["d", 1]], "jobs": [["d", 1, "e", "text \u2028 \"quoted\"", "s"]]}
    data = pack(header, tables)
    got_header, got = unpack(data)
    assert got_header == header
    assert got.features.equals(tables.features) and got.sequences.equals(tables.sequences)
    assert got.examples.column("activations").to_pylist()[1] is None
    for damaged in (data[:-1], data + b"\0", data[:5]):
        with pytest.raises(ValueError):
            unpack(damaged)


def test_an_answer_raises_again_what_the_worker_raised():
    assert answered(outcome(lambda r: {"scores": [{"score": 0.5}]}))([]) == {"scores": [{"score": 0.5}]}
    with pytest.raises(ParseError, match="^no windows$"):
        answered(outcome(lambda r: (_ for _ in ()).throw(ParseError("no windows"))))([])

    def broken(responses):
        raise ZeroDivisionError("division by zero")

    with pytest.raises(Exception) as raised:
        answered(decode(encode(outcome(broken))))([])
    assert type(raised.value).__name__ == "ZeroDivisionError" and str(raised.value) == "division by zero"
    assert decode(encode({"score": np.float32(0.25), "n": np.int64(3)})) == {"score": 0.25, "n": 3}


def test_label_command_with_processes(cli, hostile, tmp_path, small_pages, pages_answered):
    alone = tmp_path / "alone.duckdb"
    shutil.copy(hostile, alone)
    for path, processes in ((alone, "1"), (hostile, "2")):
        result = cli("label", "--explainer", "token-lookup", "--scorer", "token-check", "--no-progress",
                     "--processes", processes, "--store", path)
        assert result.exit_code == 3, result.output  # features 7 and 11 failed
        assert "1 never fired: skipped" in result.output
        assert bool(pages_answered) == (processes == "2")
    assert _rows(hostile) == _rows(alone)


def test_a_worker_loads_only_featurelens_page_answerers():
    from featurelens.llm.offline_pool import PoolUnavailable

    with pytest.raises(PoolUnavailable, match="'os:system' is not a featurelens page answerer"):
        OfflinePool("os:system", {}, None, (), 1)
