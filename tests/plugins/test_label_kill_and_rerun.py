"""``featurelens label`` as a subprocess, killed with ``kill -9`` at random points of
both stages against the fault-injecting server, then rerun to the end (audit of issues 10
and 15): no answered prompt is sent again, every 200 answer the server sent is an ``ok``
row of ``llm_calls``, one explanation and one score per feature, and no open failures.
Before the providers kept a client per event loop, the score stage lost answers here."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import fault_server
import pytest
from fault_server import Faults, FaultServer
from llm_fixtures import fill

import featurelens

TESTS = Path(__file__).resolve().parents[1]


class ScoringFaultServer(FaultServer):
    """The fault server, answering detection prompts with a 0/1 list as long as the examples
    they show (the prompt's digest says which; the module's answer function is swapped once,
    while the server runs)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shown: dict[str, int] = {}

    def start(self) -> "ScoringFaultServer":
        self._explanation = fault_server.good_answer

        def answer(digest: str, messages: list | None = None) -> str:
            n = self.shown.get(digest, 0)
            if not n:
                return self._explanation(digest, messages)
            return "[" + ",".join("1" if int(digest[i], 16) % 2 else "0" for i in range(n)) + "]"

        fault_server.good_answer = answer
        return super().start()

    def stop(self) -> None:
        super().stop()
        fault_server.good_answer = self._explanation

    async def _answer(self, path, body, reader, writer):
        messages = body.get("messages") or []
        last = (messages or [{}])[-1].get("content", "")
        if isinstance(last, list):
            last = " ".join(block.get("text", "") for block in last)
        digest = hashlib.sha256(json.dumps([body.get("system"), messages], sort_keys=True).encode()).hexdigest()
        self.shown[digest] = len(re.findall(r"<example \d+>", last))
        return await super()._answer(path, body, reader, writer)


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_kill9_label_at_random_points_never_pays_twice(tmp_path, provider):
    path = tmp_path / "store.duckdb"
    with featurelens.open_store(path) as store:
        fill(store, 30, n_sequences=128, examples_per_feature=10)
    server = ScoringFaultServer(Faults(rate_limit=0.08, server_error=0.08, drop=0.03, hang=0.01,
                                       garbage=0.08, seed=7)).start()
    url = server.openai_url if provider == "openai" else server.anthropic_url
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "OPENAI_API_KEY": "sk-label-kill-test-0123",
           "ANTHROPIC_API_KEY": "sk-ant-label-kill-test-0123", "FEATURELENS_LOAD_PLUGINS": ""}
    # one request a feature: the kills land a counted number of answers into the run
    command = [sys.executable, "-m", "featurelens", "label", "--option", "features_per_request=1", "--llm", f"{provider}:fault", "--scorer",
               "detection", "--provider-option", f"base_url={url}", "--provider-option", "timeout=2",
               "--concurrency", "8", "--no-progress", "--store", str(path)]
    rng = random.Random(5)
    try:
        kills = 0
        for _ in range(5):
            child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            server.kill_after(rng.randint(1, 12), child.pid, rng.uniform(0.0, 1.2))
            kills += child.wait(120) == -9
            server.thaw()
        assert kills >= 3, kills
        for _ in range(6):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=200)
            if done.returncode == 0:
                break
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        server.stop()
    with featurelens.open_store(path, read_only=True) as store:
        ok_calls = store.execute("SELECT count(*) FROM llm_calls WHERE status = 'ok'")[0][0]
        attempts = store.execute("SELECT count(*) FROM llm_attempts")[0][0]
        explained = store.execute("SELECT count(*), count(DISTINCT feature) FROM explanations")[0]
        scored = store.execute("SELECT count(*), count(DISTINCT explanation_id) FROM scores")[0]
        open_failures = store.execute("SELECT count(*) FROM failures WHERE resolved_at IS NULL")[0][0]
    assert server.paid_twice == []
    assert ok_calls == server.ok and attempts == server.seen, (ok_calls, server.ok, attempts, server.seen)
    assert explained == (30, 30) and scored == (30, 30) and open_failures == 0
