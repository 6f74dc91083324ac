"""Money under faults (issue 10, items 1, 2, 4, 5): kill -9 at random points against a
fault-injecting OpenAI/Anthropic-compatible server, then reconcile with its books."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from fault_server import GARBAGE, TOPICS, Faults, FaultServer
from llm_fixtures import fill

import featurelens

TESTS = Path(__file__).resolve().parents[1]


class Client:
    """The forking explain runner of fault_client.py."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, str(TESTS / "fault_client.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=TESTS)

    def start(self, **command) -> int:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return int(self._expect("PID"))

    def wait(self) -> tuple[int, dict | None]:
        stats = None
        while True:
            line = self.proc.stdout.readline()
            assert line, "the fault client died"
            if line.startswith("STATS "):
                stats = json.loads(line[6:])
            elif line.startswith("ERROR "):
                raise AssertionError(line)
            elif line.startswith("EXIT "):
                return int(line.split()[1]), stats

    def _expect(self, word: str) -> str:
        line = self.proc.stdout.readline()
        assert line.startswith(word + " "), line
        return line.split()[1]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture
def client(monkeypatch):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]),
           "OPENAI_API_KEY": "sk-fault-test", "ANTHROPIC_API_KEY": "sk-ant-fault-test",
           "FEATURELENS_LOAD_PLUGINS": ""}
    runner = Client(env)
    yield runner
    runner.close()


def books(path: Path) -> dict[str, int]:
    with featurelens.open_store(path, read_only=True) as store:
        def one(sql: str) -> int:
            return store.execute(sql)[0][0]
        return {
            "ok_calls": one("SELECT count(*) FROM llm_calls WHERE status = 'ok'"),
            "attempts": one("SELECT count(*) FROM llm_attempts"),
            "attempts_in_calls": one("SELECT coalesce(sum(attempts), 0) FROM llm_calls"),
            "explanations": one("SELECT count(*) FROM explanations"),
            "bad_explanations": one(
                "SELECT count(*) FROM explanations WHERE text NOT IN ("
                + ",".join(f"'{t}'" for t in TOPICS) + ")"),
            "duplicate_failures": one(
                "SELECT count(*) FROM (SELECT 1 FROM failures GROUP BY stage, dictionary_id, "
                "feature, method HAVING count(*) > 1)"),
            "open_failures": one("SELECT count(*) FROM failures WHERE resolved_at IS NULL"),
            "failures": one("SELECT count(*) FROM failures"),
            "garbage_cached": one("SELECT count(*) FROM llm_cache WHERE "
                                  + " OR ".join(f"response LIKE '%{json.dumps(g)[1:8]}%'" for g in GARBAGE[1:])),
        }


@pytest.mark.parametrize("provider,n_kills", [
    ("openai", 5), pytest.param("openai", 10, marks=pytest.mark.slow),
    pytest.param("anthropic", 4, marks=pytest.mark.slow)])
def test_kill9_at_random_points_never_pays_twice_and_every_attempt_is_on_record(tmp_path, client, provider,
                                                                               n_kills):
    """The kill lands a random number of answers into a run, a random 0-1.2 s after the
    client has read every answer the server sent before it stopped answering (so it hits
    the engine between or inside its once-a-second commits)."""
    path = tmp_path / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill(store, 80, n_sequences=256)  # 80 distinct prompts
    server = FaultServer(Faults(rate_limit=0.08, server_error=0.08, drop=0.03, hang=0.01,
                                garbage=0.08, seed=7)).start()
    url = server.openai_url if provider == "openai" else server.anthropic_url
    command = {"store": str(path), "url": url, "llm": f"{provider}:fault"}
    rng = random.Random(10 if provider == "openai" else 11)
    try:
        kills = 0
        for _ in range(n_kills):  # kill -9 at random points
            pid = client.start(**command)
            server.kill_after(rng.randint(1, 7), pid, rng.uniform(0.0, 1.2))
            code, _ = client.wait()
            server.thaw()
            kills += code == -9
        assert kills >= n_kills - 2, f"only {kills} of {n_kills} runs were killed: the points are not inside runs"
        for _ in range(6):  # then finish: rerun until no failure is left
            client.start(**command)
            code, stats = client.wait()
            if stats["failed"] == 0:
                break
        assert code == 0 and stats["failed"] == 0, stats
    finally:
        server.stop()
    got = books(path)
    # 1. zero prompts that were answered were ever sent again ...
    assert server.paid_twice == []
    # ... and every HTTP 200 the server sent is an ok row of llm_calls
    assert got["ok_calls"] == server.ok, (got, server.ok, server.outcomes)
    # 2. every request the server saw is an attempt on record (retries, kills included)
    assert got["attempts"] == server.seen, (got, server.seen, server.outcomes)
    assert server.outcomes["rate_limit"] and server.outcomes["server_error"] and server.garbage_sent
    # 3./4. garbage became failures, never explanations, and was asked again
    assert got["explanations"] == 80 and got["bad_explanations"] == 0
    assert got["garbage_cached"] == 0
    # 5. one row per piece of work, all resolved once the work succeeded
    assert got["duplicate_failures"] == 0 and got["open_failures"] == 0 and got["failures"] > 0
