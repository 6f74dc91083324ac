"""`serve` no longer locks writers out: a real `featurelens explain` (against the loopback
OpenAI-compatible stub) writes the store while the browser serves pages from it, and the
pages show the running job's progress, then its results."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from llm_fixtures import fill
from synthetic_store import serving

import featurelens
from featurelens.core.store.database import Store
from featurelens.core.store.turns import ask_for_turn, wait_file

N = 24


def _start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "featurelens.testing.stub_server",
                               "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    assert line.startswith("PORT "), line
    return server, f"http://127.0.0.1:{line.split()[1]}/v1"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_explain_writes_while_serve_reads_and_pages_show_progress(store_path: Path, tmp_path: Path) -> None:
    with featurelens.open_store(store_path) as store:
        fill(store, N)
        did = store.execute("SELECT min(dictionary_id) FROM features")[0][0]
    stub, base_url = _start_stub(0.1)
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "", "FEATURELENS_LOAD_PLUGINS": ""}
    command = [sys.executable, "-m", "featurelens.cli", "explain", "--llm", "openai:stub", "--option", "features_per_request=1",
               "--concurrency", "2", "--no-progress", "--store", str(store_path)]
    pages: list[tuple[int, str]] = []
    try:
        with serving(store_path) as base:
            assert _get(base)[0] == 200  # the browser has the store open before the job starts
            job = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            while job.poll() is None:
                pages.append(_get(f"{base}feature/{urllib.request.quote(did, safe='')}/1"))
                time.sleep(0.2)
            out, err = job.communicate()
            assert job.returncode == 0, err  # before: "The store ... is in use by process ..."
            assert f"explained {N:,} features" in out
            home = _get(base)[1]
            count = _get(f"{base}sql?q=" + urllib.request.quote("SELECT count(*) AS n FROM explanations"))[1]
    finally:
        stub.kill()
        stub.wait()
    assert pages and all(status == 200 for status, _ in pages), [p[1][:300] for p in pages if p[0] != 200]
    progress = [re.search(r"(\d+) of 24 features", body) for _, body in pages]
    seen = [int(m.group(1)) for m in progress if m]
    assert seen and seen == sorted(seen) and seen[0] < N, seen  # the banner counts up while it runs
    assert "explain run explain-" in next(body for _, body in pages if "of 24 features" in body)
    # after the job the same server sees its results (caches rebuilt when the file changed)
    assert f"<td>{N}</td>" in count and "<b>Running</b>" not in home


def test_a_store_gives_its_turn_only_when_asked_and_never_inside_a_transaction(store_path: Path) -> None:
    store = Store.open(store_path)
    try:
        assert store.give_turn() is False  # nobody waiting
        time.sleep(0.02)
        ask_for_turn(store_path)
        assert wait_file(store_path).exists()
        with store.transaction():
            assert store.give_turn() is False  # half-done work is never given away
        assert store.give_turn() is True
        with featurelens.open_store(store_path, read_only=True):
            pass  # another process (here: another instance) could open it now
        store.insert("failures", _failure())  # the next write reopens the file
        assert store.execute("SELECT count(*) FROM failures")[0][0] == 1
    finally:
        store.close()


def _failure():
    import pyarrow as pa

    return pa.table({"stage": ["explain"], "reason": ["test"]})


def test_browser_gives_way_to_a_waiting_writer_between_pages(store_path: Path) -> None:
    with featurelens.open_store(store_path) as store:
        fill(store, 5)
    code = ("import featurelens, sys; s = featurelens.open_store(sys.argv[1]); "
            "s.execute(\"INSERT INTO failures (stage, reason) VALUES ('x', 'y')\"); s.close(); print('wrote')")
    with serving(store_path) as base:
        assert _get(base)[0] == 200  # the browser holds the file now
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", code, str(store_path)], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "FEATURELENS_LOAD_PLUGINS": ""})
        assert done.returncode == 0 and "wrote" in done.stdout, done.stderr
        assert time.monotonic() - started < 20
        status, body = _get(f"{base}sql?q=" + urllib.request.quote("SELECT count(*) AS n FROM failures"))
        assert status == 200 and "<td>1</td>" in body


def test_many_page_threads_and_a_writer_do_not_deadlock(store_path: Path) -> None:
    with featurelens.open_store(store_path) as store:
        fill(store, 5)
    errors: list[str] = []
    with serving(store_path) as base:
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                status, body = _get(base)
                if status != 200:
                    errors.append(body[:200])

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        code = ("import featurelens, sys, time\n"
                "s = featurelens.open_store(sys.argv[1])\n"
                "for i in range(5):\n"
                "    s.execute(\"INSERT INTO failures (stage, reason) VALUES ('x', 'y')\")\n"
                "    s.give_turn(); time.sleep(0.05)\n"
                "s.close()\n")
        try:
            done = subprocess.run([sys.executable, "-c", code, str(store_path)], capture_output=True,
                                  text=True, timeout=120, env={**os.environ, "FEATURELENS_LOAD_PLUGINS": ""})
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert not errors


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
