"""How large the "paid again" window of a kill is: an answer the server finished sending
just before ``kill -9``, that the client had not yet read, is requested (and billed) again
by the rerun. This script measures that window.

A loopback OpenAI-compatible server answers every chat request with a 200 after a short
delay and logs, per prompt, the moment the last byte of its answer was written. ``explain``
runs as a subprocess and is killed with SIGKILL at random moments, ``--kills`` times, each
run resuming the last; a final run finishes the job. A prompt the server answers twice was
paid again; it either finished after the client died (in flight at the kill, which no
client can avoid) or before the kill, unread; for the latter the window is the time from
the end of its first answer to the kill. Printed: the 200s sent, those paid again and their share, and the window
(min, median, max, in ms).

    .venv/bin/python benchmarks/paid_again_window.py [--features 400] [--kills 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


class Server:
    """Answers chat completions after ``delay`` seconds; ``sent[digest]`` lists the times
    at which each answer's last byte was written."""

    def __init__(self, delay: float):
        self.sent: dict[str, list[float]] = {}
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
                time.sleep(delay)
                text = f"Explanation: pattern {digest[:6]}"
                data = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                                   "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                                "message": {"role": "assistant", "content": text}}],
                                   "usage": {"prompt_tokens": 40, "completion_tokens": 4,
                                             "total_tokens": 44}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                with lock:
                    outer.sent.setdefault(digest, []).append(time.time())

            def log_message(self, *args: object) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client killed mid-answer is the point of the run

        self.http = Quiet(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/v1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=400)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds the server takes per answer")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from labeling import build_store

    rng = random.Random(args.seed)
    server = Server(args.delay)
    env = {**os.environ, "OPENAI_API_KEY": "sk-paid-again-0123456789", "FEATURELENS_LOAD_PLUGINS": "",
           "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "store.duckdb"
        build_store(str(store), args.features)
        command = [sys.executable, "-m", "featurelens", "explain", "--option", "features_per_request=1",
                   "--llm", "openai:bench", "--provider-option", f"base_url={server.url}",
                   "--concurrency", str(args.concurrency), "--no-progress", "--store", str(store)]
        kills: list[float] = []
        starts: list[float] = []
        for _ in range(args.kills):
            before = sum(len(v) for v in server.sent.values())
            starts.append(time.time())
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while sum(len(v) for v in server.sent.values()) == before and process.poll() is None:
                time.sleep(0.005)  # wait for the first answer of this run, then kill at random
            time.sleep(rng.uniform(0.05, 1.0))
            process.send_signal(signal.SIGKILL)
            kills.append(time.time())
            process.wait()
        final = subprocess.run(command, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stdout + final.stderr
    windows, after = [], 0
    for times in server.sent.values():
        for first in times[:-1]:  # every answer but the last was paid again
            run = max(i for i, start in enumerate(starts) if start <= first)
            if first <= kills[run]:  # sent before the kill, not yet read by the client
                windows.append((kills[run] - first) * 1000)
            else:  # finished after the client died: in flight at the kill
                after += 1
    answered = sum(len(v) for v in server.sent.values())
    again = answered - len(server.sent)
    print(f"features {args.features}, kills {len(kills)}, server delay {args.delay * 1000:.0f} ms, "
          f"concurrency {args.concurrency}")
    print(f"200 answers sent {answered}, prompts {len(server.sent)}, paid again {again} "
          f"({again / answered:.2%} of the answers sent; {again / len(kills):.1f} per kill)")
    print(f"of those, {after} were still being written when the process died (in flight) and "
          f"{len(windows)} had been sent before the kill but not yet read")
    if windows:
        print(f"sent-before-the-kill window (end of the answer to the kill): min {min(windows):.1f} ms, "
              f"median {statistics.median(windows):.1f} ms, max {max(windows):.1f} ms")


if __name__ == "__main__":
    main()
