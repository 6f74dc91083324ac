"""The main job over a 1,048,576-feature dictionary on this machine, stage by stage.

Run: PYTHONPATH=. .venv/bin/python benchmarks/million.py [--features 1048576] [--store PATH]
     [--llm-features N] [--stages extract,label,llm,score,export,serve] [--batch-requests N]
     [--k 128] [--extract-tokens N] [--kill] [--keep]

Stages (each one a ``featurelens`` command in its own process, as a user runs them):

1. ``extract`` (by default; not with ``--store``): a TopK dictionary as wide as
   ``--features`` fitted to SmolLM2's activations so that most of its features fire
   (benchmarks/fitted_dictionary.py: whitened random encoder directions, ``--k`` active a
   token; built once per width and k under ``--dict-folder``, timed as its own line), then
   ``featurelens extract`` of it on the embedded SmolLM2 at ``blocks.3.hook_resid_post``
   over the held-out stdlib, 64-token windows, 10 top, 5 quantile and 5 random examples a
   feature, ``--extract-tokens`` tokens (default: ``k T / F = 4.6``, which fired 0.84-0.94
   of the features at 65,536); it prints the share that fired. Its store feeds the rest.
   Otherwise ``store``: with ``--stages`` leaving out ``extract`` and no ``--store``, a
   store as wide as the dictionary written in bulk by DuckDB (tests/wide_store.py: 32-token
   windows, 10 top, 5 quantile and 5 random windows a fired feature, one feature in ten
   never fired). With ``--store PATH`` (an
   extracted store) PATH is copied.
2. ``label offline``: ``label --explainer token-lookup --scorer token-check`` over every
   feature (the dead ones are skipped and named).
3. ``explain --batch-api``: token-activations prompts for ``--llm-features`` fired
   features (all by default) submitted to a stub OpenAI Batch server on loopback
   (tests/batch_server.py, kept lean: it keeps request ids, not bodies), split into
   files of at most 50,000 requests / 190 MiB.
4. ``batches status`` and 5. ``batches collect``: progress per batch, then download,
   cache and write every answer as an explanation.
6. ``score``: token-check over the LLM's explanations.
7. ``export neuronpedia`` (of an extracted store, it first fills the logit effects the
   extraction left pending: ``--logit-effects auto`` is lazy above 16,384 features on a CPU).
8. ``serve``: the dictionary's list page and overview page, fetched 5 times each.

For every stage it prints wall time, the stage process's CPU time (user + system) and peak RSS
(``/usr/bin/time``), features a second by wall and by CPU time, and the store's size after it.
Figures depend on the machine's load: the machine is shared, so say what else ran (CPU time
moves less with the load of others than wall time).

``--stages`` runs some of the stages (``--stages llm``: submit, status and collect only); by
default every stage, or every stage but ``extract`` with ``--store``. When every stage ran, the
last line compares the whole job's wall time and highest peak RSS with the goal (60 minutes,
8 GB).
``--kill`` first SIGKILLs the submit twice (mid-file, while the second provider file is
being written, and at a create call, after the upload and before the batch id is
recorded) and the collect twice (at the second batch's download, and while the answers
are written), then resumes each and prints how many requests were billed in two batches
and how many billed answers the store lacks (both must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from batch_server import BatchServer  # noqa: E402

DICTIONARY = "wide"
#: The stages ``--stages`` picks from, in the order they run.
STAGES = ("extract", "label", "llm", "score", "export", "serve")
#: Where the extract stage reads the model, and its example counts (the synthetic store's).
HOOK = "blocks.3.hook_resid_post"
EXAMPLES = ("--top-k", "10", "--quantile-examples", "5", "--random-examples", "5")
#: Issue 23's goal for the whole job (every stage, from the extraction) on this machine.
GOAL_S, GOAL_MB = 3600, 8192
#: The CPU seconds of the last command :func:`run` ran.
LAST_CPU_S = [0.0]


class LeanBatchServer(BatchServer):
    """The stub batch server, holding each uploaded request's id only (a million
    prompts would otherwise sit in its memory); every answer is the same explanation.
    It counts the result files it has served (``--kill`` times a kill by them)."""

    results_served = 0

    def parse_upload(self, text: str) -> list[dict]:
        start = len('{"custom_id": "')
        return [{"custom_id": line[start:line.index('"', start)], "body": None}
                for line in text.splitlines() if line.startswith('{"custom_id": "')]

    def _openai_results(self, h, batch_id):  # type: ignore[no-untyped-def]
        super()._openai_results(h, batch_id)
        with self.lock:
            self.results_served += 1

    def billed(self) -> Counter:
        """How many created (billed) batches hold each request."""
        with self.lock:
            return Counter(line["custom_id"] for batch in self.batches.values()
                           for line in self.files[batch["input"]])


@dataclass
class Stage:
    name: str
    wall_s: float
    peak_rss_mb: float
    features: int
    store_mb: float
    note: str = ""
    cpu_s: float = 0.0  #: user + system CPU seconds of the stage's process


    def line(self) -> str:
        rate = f"{self.features / self.wall_s:,.0f}" if self.features and self.wall_s > 0 else "-"
        cpu = f"{self.features / self.cpu_s:,.0f}" if self.features and self.cpu_s > 0 else "-"
        return (f"{self.name:<32} {self.wall_s:>9.1f} s {self.cpu_s:>8.1f} s {self.peak_rss_mb:>9,.0f} MB "
                f"{rate:>8} {cpu:>8} feat/s {self.store_mb:>9,.0f} MB  {self.note}")


def run(args: list[str], env: dict[str, str], log: Path,
        arm: "Callable[[int], None] | None" = None) -> tuple[float, float, str]:
    """Run one command; (wall seconds, peak RSS in MB, its output); its CPU seconds (user +
    system) go to ``LAST_CPU_S`` for the next :class:`Stage`. Fails loudly, except
    that with ``arm`` (told the command's pid once it runs, to arrange its SIGKILL) the
    command must end killed by SIGKILL.

    The peak comes from ``/usr/bin/time`` (a small parent): Linux carries a parent's peak
    RSS into a forked child's ``ru_maxrss``, and this process holds the stub server."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(["/usr/bin/time", "-f", "MAXRSS_KB %M %U %S", *args], stdout=out,
                                   stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        if arm is not None:
            arm(_child_of(process.pid))
        process.wait()
    wall = time.perf_counter() - started
    text = log.read_text()
    killed = "terminated by signal 9" in text
    if (arm is None and process.returncode != 0) or (arm is not None and not killed):
        raise SystemExit(f"{' '.join(args)} exited {process.returncode}"
                         f"{' (it was to be killed)' if arm else ''}:\n{text[-3000:]}")
    lines = text.splitlines()
    peak = [line for line in lines if line.startswith("MAXRSS_KB ")]
    text = "\n".join(line for line in lines if not line.startswith("MAXRSS_KB "))
    LAST_CPU_S[0] = sum(float(v) for v in peak[-1].split()[2:4]) if peak else 0.0
    return wall, int(peak[-1].split()[1]) / 1024 if peak else 0.0, text


def _child_of(pid: int) -> int:
    """The pid of the command ``/usr/bin/time`` (``pid``) started."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise SystemExit("the command did not start within 30 s")


def kill_at_server(server: "LeanBatchServer", point: str, after: int) -> Callable[[int], None]:
    """Arm the stub server to SIGKILL the command at its ``after``+1-th ``point`` call."""
    def arm(pid: int) -> None:
        server.kill_at, server.kill_after, server.pid = point, after, pid
    return arm


def kill_when(condition: Callable[[], bool], delay_s: float) -> Callable[[int], None]:
    """SIGKILL the command ``delay_s`` after ``condition()`` first holds."""
    def arm(pid: int) -> None:
        def watch() -> None:
            while not condition():
                time.sleep(0.02)
            time.sleep(delay_s)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended first: run() says so
        threading.Thread(target=watch, daemon=True).start()
    return arm


def fl(*args: str) -> list[str]:
    return [sys.executable, "-m", "featurelens", *args]


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1 << 20)
    parser.add_argument("--store", type=Path, default=None, help="an extracted store to start from")
    parser.add_argument("--llm-features", type=int, default=None, help="fired features sent to the LLM (default all)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--stages", default=None,
                        help=f"comma-separated stages to run, of {','.join(STAGES)} (default: all; with "
                             "--store all but extract; score needs llm; extract makes the store, so not "
                             "with --store)")
    parser.add_argument("--k", type=int, default=128, help="extract: active features a token")
    parser.add_argument("--extract-tokens", type=int, default=None,
                        help="extract: tokens to read (default k T / F = 4.6: 0.84-0.94 of 65,536 features fired)")
    parser.add_argument("--fit-tokens", type=int, default=8192,
                        help="extract: corpus tokens the dictionary is fitted to")
    parser.add_argument("--dict-folder", type=Path, default=Path(tempfile.gettempdir()) / "featurelens-fitted",
                        help="extract: where fitted dictionaries are kept between runs")
    parser.add_argument("--batch-requests", type=int, default=None,
                        help="requests a provider file holds at most (default OpenAI's 50,000)")
    parser.add_argument("--kill", action="store_true",
                        help="SIGKILL the submit mid-file and at a create, the collect at a "
                             "download and mid-write; then check nothing was paid twice or lost")
    parser.add_argument("--kill-delay", type=float, default=3.0,
                        help="seconds after the first create (submit) or the last download "
                             "(collect) at which --kill's timed kills strike")
    args = parser.parse_args()
    chosen = set(args.stages.split(",")) if args.stages else set(STAGES[1:] if args.store else STAGES)
    if chosen - set(STAGES) or ("score" in chosen and "llm" not in chosen):
        parser.error(f"--stages takes some of {','.join(STAGES)}, score only with llm")
    if "extract" in chosen and args.store is not None:
        parser.error("--stages extract makes the store; leave out --store, or extract")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="million-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "million.duckdb"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "FEATURELENS_LOAD_PLUGINS": ""}
    stages: list[Stage] = []
    total_started = time.perf_counter()
    n = args.features

    def record(name: str, wall: float, rss: float, features: int, note: str = "") -> None:
        stage = Stage(name, wall, rss, features, size_mb(store), note, LAST_CPU_S[0])
        LAST_CPU_S[0] = 0.0
        stages.append(stage)
        print(stage.line(), flush=True)

    print(f"{'stage':<32} {'wall':>11} {'cpu':>10} {'peak RSS':>12} {'wall, cpu rate':>24} {'store':>12}",
          flush=True)
    if "extract" in chosen:
        extract_stage(args, store, env, work, record)
    elif args.store is None:
        code = (f"from wide_store import wide_store; from pathlib import Path; "
                f"wide_store(Path({str(store)!r}), n_features={n})")
        wall, rss, _ = run([sys.executable, "-c", code], env, work / "store.log")
        record("store (bulk, synthetic)", wall, rss, n)
    else:
        shutil.copy(args.store, store)
        record("store (copied)", 0.0, 0.0, 0, str(args.store))
    import duckdb

    with duckdb.connect(str(store), read_only=True) as db:
        dictionary, fired, dead = db.execute(
            "SELECT any_value(dictionary_id), count(*) FILTER (WHERE fire_count > 0), "
            "count(*) FILTER (WHERE fire_count = 0) FROM features").fetchone()
    print(f"  {fired + dead:,} features: {fired:,} fired, {dead:,} never fired", flush=True)

    if "label" in chosen:
        wall, rss, text = run(fl("label", "--explainer", "token-lookup", "--scorer", "token-check",
                                 "--no-progress", "--store", str(store)), env, work / "label.log")
        record("label offline (lookup+check)", wall, rss, fired, _first(text, "never fired"))

    explained = 0
    if "llm" in chosen:
        explained = llm_stages(args, store, env, work, record)

    if "score" in chosen:
        wall, rss, text = run(fl("score", "--scorer", "token-check", "--explained-by",
                                 "openai:gpt-4o-mini", "--no-progress", "--store", str(store)),
                              env, work / "score.log")
        record("score token-check (LLM labels)", wall, rss, explained)

    if "export" in chosen:
        wall, rss, text = run(fl("export", "--format", "neuronpedia", "-o", str(work / "neuronpedia"),
                                 "--store", str(store)), env, work / "export.log")
        record("export neuronpedia", wall, rss, fired + dead, text.strip().splitlines()[-1][:80])

    if "serve" in chosen:
        serve_pages(store, env, dictionary, record)
    total = time.perf_counter() - total_started
    peak = max(s.peak_rss_mb for s in stages)
    print(f"total wall {total:,.0f} s; highest stage peak RSS {peak:,.0f} MB; store {size_mb(store):,.0f} MB",
          flush=True)
    if chosen == set(STAGES):
        met = total < GOAL_S and peak < GOAL_MB
        print(f"goal, the whole job under {GOAL_S // 60} minutes and {GOAL_MB // 1024} GB: "
              f"{total / GOAL_S:.2f} of the time, {peak / GOAL_MB:.2f} of the memory: "
              f"{'met' if met else 'NOT met'}", flush=True)
    (work / "million.json").write_text(json.dumps([s.__dict__ for s in stages], indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}")


def extract_stage(args: argparse.Namespace, store: Path, env: dict[str, str], work: Path,
                  record: Callable[..., None]) -> None:
    """Build (once) the fitted dictionary, then ``featurelens extract`` it into ``store``."""
    from fitted_dictionary import independent_share, tokens_for

    n, k = args.features, args.k
    tokens = args.extract_tokens or tokens_for(n, k)
    wall, rss, text = run([sys.executable, str(ROOT / "benchmarks" / "fitted_dictionary.py"), "--width", str(n),
                           "--k", str(k), "--fit-tokens", str(args.fit_tokens), "--folder", str(args.dict_folder)],
                          env, work / "dictionary.log")
    line = _first(text, "dictionary ")
    dictionary = line.split(" ")[1]
    record("fitted dictionary", wall, rss, n, line.split(" ", 2)[2])
    wall, rss, text = run(fl("extract", "--model", "smollm2", "--hookpoint", HOOK, "--dictionary", dictionary,
                             "--tokens", str(tokens), *EXAMPLES, "--store", str(store)), env, work / "extract.log")
    import duckdb

    with duckdb.connect(str(store), read_only=True) as db:
        fired = db.execute("SELECT count(*) FILTER (WHERE fire_count > 0) FROM features").fetchone()[0]
    record(f"extract (k={k}, {tokens:,} tokens)", wall, rss, n,
           f"fired {fired:,} of {n:,} = {fired / n:.3f} (independent tokens: "
           f"{independent_share(n, k, tokens):.3f})")


def llm_stages(args: argparse.Namespace, store: Path, env: dict[str, str], work: Path,
               record: Callable[..., None]) -> int:
    """Submit, status and collect through the stub server (with ``--kill``, each of submit
    and collect killed twice first, then checked); the number of features explained (fired
    features whose prompts are the same share one request, so it can exceed the requests)."""
    server = LeanBatchServer()
    llm_env = {**env, **server.env()}
    llm_where = ["--limit", str(args.llm_features)] if args.llm_features else []
    file_size = ["--provider-option", f"batch_requests={args.batch_requests}"] if args.batch_requests else []
    submit = fl("explain", "--llm", "openai:gpt-4o-mini", "--explainer", "token-activations",
                "--option", "features_per_request=1", "--batch-api", "--no-progress", *file_size,
                *llm_where, "--store", str(store))
    collect = fl("batches", "collect", "--no-progress", "--store", str(store))
    try:
        if args.kill:
            wall, rss, _ = run(submit, llm_env, work / "submit-kill1.log",
                               kill_when(lambda: server.creates >= 1, args.kill_delay))
            record("submit, SIGKILL mid-file 2", wall, rss, 0, f"{server.creates} batch(es) created")
            wall, rss, _ = run(submit, llm_env, work / "submit-kill2.log", kill_at_server(server, "create", 0))
            record("submit, SIGKILL at a create", wall, rss, 0,
                   f"{server.creates} created, the last one's id unrecorded")
        wall, rss, text = run(submit, llm_env, work / "submit.log")
        submitted = sum(server.billed().values())
        record("explain --batch-api submit" + (" (resumed)" if args.kill else ""), wall, rss, submitted,
               f"{len(server.batches)} batches; {_first(text, 'submitted ')[:60]}")
        wall, rss, text = run(fl("batches", "status", "--store", str(store)), llm_env, work / "status.log")
        record("batches status", wall, rss, 0, text.strip().splitlines()[-1] if text.strip() else "")
        if args.kill:
            wall, rss, _ = run(collect, llm_env, work / "collect-kill1.log", kill_at_server(server, "results", 1))
            record("collect, SIGKILL at download 2", wall, rss, 0, f"{server.results_served} downloads served")
            batches = len(server.batches)
            wall, rss, _ = run(collect, llm_env, work / "collect-kill2.log",
                               kill_when(lambda: server.results_served >= batches, args.kill_delay))
            record("collect, SIGKILL mid-write", wall, rss, 0, f"{server.results_served} downloads served")
        wall, rss, text = run(collect, llm_env, work / "collect.log")
        import duckdb

        with duckdb.connect(str(store), read_only=True) as db:
            explained = db.execute("SELECT count(*) FROM explanations WHERE llm = 'openai:gpt-4o-mini'").fetchone()[0]
        record("batches collect" + (" (resumed)" if args.kill else ""), wall, rss, explained, _first(text, "wrote"))
        print(paid_and_lost(server, store), flush=True)
    finally:
        server.stop()
    return explained


def paid_and_lost(server: "LeanBatchServer", store: Path) -> str:
    """Requests billed twice (in two created batches) and answers lost (billed, not stored)."""
    import duckdb

    billed = server.billed()
    with duckdb.connect(str(store), read_only=True) as db:
        cached = {row[0] for row in db.execute("SELECT cache_key FROM llm_cache").fetchall()}
        recorded_twice = db.execute("SELECT count(*) FROM (SELECT cache_key FROM llm_calls WHERE "
                                    "status = 'ok' GROUP BY 1 HAVING count(*) > 1)").fetchone()[0]
        explained = db.execute("SELECT count(*) FROM explanations WHERE llm = 'openai:gpt-4o-mini'").fetchone()[0]
    twice = sum(1 for count in billed.values() if count > 1)
    lost = sum(1 for key in billed if key not in cached)
    return (f"  billed requests {len(billed):,} in {len(server.batches)} batches ({server.creates} creates); "
            f"paid twice {twice:,}; answers lost {lost:,}; answers recorded twice {recorded_twice:,}; "
            f"explanations {explained:,}")


def serve_pages(store: Path, env: dict[str, str], dictionary: str, record: Callable[..., None]) -> None:
    """Fetch the dictionary's list and overview pages 5 times each from ``featurelens serve``."""
    port = free_port()
    serve = subprocess.Popen(fl("serve", "--port", str(port), "--store", str(store)), env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for name, path in (("serve list page", f"/dictionary/{dictionary}"),
                           ("serve overview page", f"/dictionary/{dictionary}/overview")):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                urllib.request.urlopen(base + path, timeout=300).read()
                times.append(time.perf_counter() - started)
            times.sort()
            record(name, times[len(times) // 2], 0.0, 0, f"median of 5; first {times[0] * 1000:.0f}-"
                                                          f"{times[-1] * 1000:.0f} ms")
    finally:
        serve.terminate()
        serve.wait()


def _first(text: str, needle: str) -> str:
    return next((line.strip()[:100] for line in text.splitlines() if needle in line), "")


if __name__ == "__main__":
    main()
