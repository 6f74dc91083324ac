"""The steering checks on the real embedded SmolLM2-135M-Instruct (slow)."""

from __future__ import annotations

import pytest
import torch

import featurelens

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from featurelens.core.host.manager import create

    return create("model_backend", "hf", "smollm2", dtype="float32", device="cpu")


def _identity(backend, hookpoint: str):
    from featurelens.core.dictionaries.loading import load_dictionary

    return load_dictionary("identity", backend=backend, hookpoint=hookpoint)


def test_empty_edit_silent_ablation_and_clamp_on_smollm2(smollm2) -> None:
    hook = "blocks.6.hook_resid_post"
    dictionary = _identity(smollm2, hook)
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    clean = smollm2.run_full(ids)
    with featurelens.steering(smollm2, dictionary, {}):
        assert torch.equal(smollm2.run_full(ids), clean)
    acts = smollm2.run(ids, [hook])[hook][0]
    silent = int((acts.amax(dim=0) <= 0).nonzero()[0])
    with featurelens.steering(smollm2, dictionary, {silent: "ablate"}):
        assert torch.equal(smollm2.run_full(ids), clean)
    with featurelens.steering(smollm2, dictionary, {silent: ("clamp", 4.0)}, positions="prompt"):
        edited = smollm2.run(ids, [hook])[hook][0]
    torch.testing.assert_close(dictionary.encode(edited)[:, silent], torch.full((ids.shape[1],), 4.0))


def test_adding_the_direction_raises_its_token_monotonically(smollm2) -> None:
    hook = f"blocks.{smollm2.n_layers - 1}.hook_resid_post"
    dictionary = _identity(smollm2, hook)
    effects = smollm2.unembedding(fold_final_norm=True)  # [d_model, vocab]: neuron i's logit effect
    feature, token = divmod(int(effects.argmax()), effects.shape[1])
    ids = smollm2.tokenizer("Once upon a time, there was a", return_tensors="pt").input_ids
    probabilities = []
    for strength in (0.0, 5.0, 10.0, 20.0, 40.0):
        with featurelens.steering(smollm2, dictionary, {feature: strength}):
            probabilities.append(float(torch.softmax(smollm2.run_full(ids)[0, -1], -1)[token]))
    assert all(b > a for a, b in zip(probabilities, probabilities[1:])), probabilities


def test_steer_command_on_smollm2(cli) -> None:
    args = ["steer", "--dictionary", "identity", "--hookpoint", "blocks.6.hook_resid_post",
            "--feature", "10=+20", "--prompt", "I think", "--max-tokens", 10, "--seed", 0,
            "--device", "cpu", "--store", "/nonexistent/none.duckdb"]
    first, second = cli(*args), cli(*args)
    assert first.exit_code == 0, first.output
    shown = first.output[first.output.index("prompt: "):]
    assert shown == second.output[second.output.index("prompt: "):]
    assert "most changed next-token probabilities" in shown
