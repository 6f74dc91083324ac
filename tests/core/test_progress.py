"""Every long step shows progress; off a terminal it prints plain periodic lines (never
carriage returns), and steps with nothing to count say when they start and end."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.core.progress import LineProgress, phase, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_lines_are_plain_and_periodic(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setenv("FEATURELENS_PROGRESS_SECONDS", "0")
    bar = progress(200, desc="export html", unit="feature", file=out)
    assert isinstance(bar, LineProgress)
    bar.update(50)
    bar.set_postfix(cost="$0.01")
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("export html: 50/200 feature (25 %)") and "\r" not in out.getvalue()
    assert lines[-1].endswith("cost=$0.01") and len(lines) == 3
    quiet = io.StringIO()
    monkeypatch.setenv("FEATURELENS_PROGRESS_SECONDS", "3600")
    bar = progress(10, desc="x", file=quiet)
    for _ in range(10):
        bar.update(1)
    assert quiet.getvalue() == ""  # nothing until the interval passes...
    bar.close()
    assert quiet.getvalue().startswith("x: 10/10 it (100 %)")  # ...and one line at the end


def test_a_terminal_gets_a_bar_and_disabled_gets_nothing() -> None:
    from tqdm import tqdm

    assert isinstance(progress(5, desc="t", file=_Terminal()), tqdm)
    silent = io.StringIO()
    bar = progress(5, desc="t", file=silent, enabled=False)
    bar.update(5)
    bar.close()
    assert silent.getvalue() == ""


def test_a_phase_says_start_progress_and_end(monkeypatch) -> None:
    monkeypatch.setenv("FEATURELENS_PROGRESS_SECONDS", "0.5")
    out = io.StringIO()
    with phase("extract: logit effects", file=out):
        time.sleep(1.2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "extract: logit effects..."
    assert any(line.startswith("extract: logit effects: still running") for line in lines[1:-1])
    assert lines[-1].startswith("extract: logit effects: done in ")


def test_extraction_is_never_silent_after_its_bar(tiny_backend, tmp_path: Path, capsys, monkeypatch,
                                                  one_thread) -> None:
    from extract_calls import extract_with

    monkeypatch.setenv("FEATURELENS_PROGRESS_SECONDS", "0")
    corpus = tmp_path / "c.txt"
    corpus.write_text("def f(x):\n    return x + 1\n" * 40, encoding="utf-8")
    extract_with(hookpoint="blocks.1.hook_resid_post", corpus=str(corpus), tokens=128, store=tmp_path / "s.duckdb",
            context=16, batch_size=4, top_k=2, n_quantile=2, quantile_bins_count=2, n_random=2,
            model_obj=tiny_backend)
    err = capsys.readouterr().err
    order = [err.index(marker) for marker in (
        "extract blocks.1.hook_resid_post: ", "extract: logit effects of every feature...",
        "extract: logit effects of every feature: done in", "extract: writing features and examples: ")]
    assert order == sorted(order), err
    assert "\r" not in err


@pytest.mark.parametrize("fmt", ["parquet", "html", "neuronpedia"])
def test_exports_show_progress_off_a_terminal(tmp_path: Path, capsys, monkeypatch, fmt: str) -> None:
    from featurelens.export.runner import export

    monkeypatch.setenv("FEATURELENS_PROGRESS_SECONDS", "0")
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=6)
    export(path, fmt, tmp_path / "out")
    err = capsys.readouterr().err
    assert f"export {fmt}: " in err and "(100 %)" in err, err


def test_training_says_what_it_does_before_its_first_update(tmp_path: Path, capsys, monkeypatch, one_thread) -> None:
    import torch

    from featurelens.core.training import train_on_tensors

    monkeypatch.setenv("FEATURELENS_PROGRESS_SECONDS", "0")
    torch.manual_seed(0)
    train_on_tensors(torch.randn(2048, 16), output=tmp_path / "sae", architecture="topk", d_sae=32,
                     options={"k": 4}, tokens=1024, batch_size=256, buffer_rows=1024, device="cpu")
    err = capsys.readouterr().err
    first_step = err.index("train: 256/")
    assert err.index("reading activations: ") < first_step
    assert err.index("initialising from the first activations") < first_step
