"""Training a small dictionary on the embedded SmolLM2 (minutes on CPU): slow."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_topk_on_smollm2_layer_6(tmp_path: Path) -> None:
    from featurelens.core.dictionaries.evaluation import evaluate
    from featurelens.core.dictionaries.loading import load_dictionary
    from featurelens.core.host.manager import create
    from featurelens.core.training import train_dictionary

    backend = create("model_backend", "hf", "smollm2", dtype="float32", device="auto")
    hook = "blocks.6.hook_resid_post"
    fvus: list[float] = []
    result = train_dictionary(backend=backend, hookpoint=hook, output=tmp_path / "sae", expansion=4, k=16,
                              tokens=100_000, batch_size=1024, buffer_rows=16_384, progress=True,
                              callback=lambda step, m: fvus.append(m["fvu"]))
    assert result.tokens == 100_000
    assert fvus[-1] < 0.5 * fvus[0]
    sae = load_dictionary(str(tmp_path / "sae"), backend=backend, hookpoint=hook)
    metrics = evaluate(sae, backend, tokens=2048, progress=False)
    assert metrics["l0"] <= 16
    assert metrics["fvu"] < 0.5
    assert metrics["ce_loss_recovered"] > 0.5  # far better than zero-ablating the residual stream
    assert metrics["dead_fraction"] < 0.5
