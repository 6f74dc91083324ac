"""Feature edits at a hookpoint on a tiny random Llama, for every dictionary kind."""

from __future__ import annotations

import pytest
import torch

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create
from featurelens.interventions import Edit, FeatureEditor, parse_edit

HOOK = "blocks.1.hook_resid_post"
D = 32  # the tiny model's width


def _ids(backend, text: str = "The quick brown fox jumps over 123") -> torch.Tensor:
    return backend.tokenizer(text, return_tensors="pt").input_ids


def _sae(architecture: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    sae = create("dictionary_learner", architecture, D, 64, hookpoint=HOOK, **options)
    with torch.no_grad():  # an encoder that is not the decoder's transpose: the read-back must solve
        sae.W_enc.mul_(0.7).add_(0.05 * torch.randn_like(sae.W_enc))
        sae.b_dec.copy_(0.1 * torch.randn_like(sae.b_dec))
    return sae.eval()


def _kinds():
    yield "identity", create("dictionary_learner", "identity", D, hookpoint=HOOK)
    yield "relu", _sae("relu")
    yield "jumprelu", _sae("jumprelu")
    yield "topk", _sae("topk", k=8)
    yield "topk-rescaled", _sae("topk", k=8, rescale_acts_by_decoder_norm=True)
    yield "batchtopk", _sae("batchtopk", k=8)


KINDS = dict(_kinds())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_empty_edit_and_silent_ablation_are_bit_identical(tiny_backend, one_thread, kind: str) -> None:
    dictionary = KINDS[kind]
    ids = _ids(tiny_backend, "The fox")  # short, so some identity neurons are negative throughout
    clean = tiny_backend.run_full(ids)
    with featurelens.steering(tiny_backend, dictionary, {}):
        assert torch.equal(tiny_backend.run_full(ids), clean)
    acts = dictionary.encode(tiny_backend.run(ids, [HOOK])[HOOK][0])
    silent = int((acts.amax(dim=0) <= 0).nonzero()[0])  # a feature that is zero on every token
    with featurelens.steering(tiny_backend, dictionary, {silent: "ablate"}):
        assert torch.equal(tiny_backend.run_full(ids), clean)
    with featurelens.steering(tiny_backend, dictionary, {silent: 4.0}):
        assert not torch.equal(tiny_backend.run_full(ids), clean)  # an edit that does something shows
    assert torch.equal(tiny_backend.run_full(ids), clean)  # leaving the block removes the hooks


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_clamp_reads_back_exactly(tiny_backend, one_thread, kind: str) -> None:
    dictionary = KINDS[kind]
    ids = _ids(tiny_backend)
    for feature, value in ((3, 5.0), (10, 2.5)):
        with featurelens.steering(tiny_backend, dictionary, {feature: ("clamp", value)}):
            edited = tiny_backend.run(ids, [HOOK])[HOOK][0]
        read = dictionary.encode(edited)[:, feature]
        torch.testing.assert_close(read, torch.full_like(read, value), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("kind", ["identity", "relu", "topk"])
def test_ablation_silences_the_feature_where_it_fired(tiny_backend, one_thread, kind: str) -> None:
    dictionary = KINDS[kind]
    ids = _ids(tiny_backend)
    acts = dictionary.encode(tiny_backend.run(ids, [HOOK])[HOOK][0])
    feature = int(acts.sum(dim=0).argmax())
    assert acts[:, feature].max() > 0
    with featurelens.steering(tiny_backend, dictionary, {feature: "ablate"}):
        edited = tiny_backend.run(ids, [HOOK])[HOOK][0]
    assert dictionary.encode(edited)[:, feature].abs().max() < 1e-4


def test_edit_changes_only_what_it_names(tiny_backend, one_thread) -> None:
    """x' - x is exactly the edited features' decoder terms: the error term is kept."""
    dictionary = KINDS["relu"]
    ids = _ids(tiny_backend)
    clean = tiny_backend.run(ids, [HOOK])[HOOK][0]
    with featurelens.steering(tiny_backend, dictionary, {7: 3.0, 9: -1.5}):
        edited = tiny_backend.run(ids, [HOOK])[HOOK][0]
    expected = 3.0 * dictionary.W_dec[7] - 1.5 * dictionary.W_dec[9]
    torch.testing.assert_close(edited - clean, expected.expand_as(clean).detach(), atol=1e-5, rtol=1e-5)


def test_steering_promotes_the_token_its_direction_promotes(tiny_backend, one_thread) -> None:
    """P(T) at the next position grows with the strength, T the token the direction most promotes."""
    dictionary = _sae("relu", seed=3)
    effects = dictionary.W_dec.detach() @ tiny_backend.unembedding(fold_final_norm=True)
    feature, token = divmod(int(effects.argmax()), effects.shape[1])
    ids = _ids(tiny_backend, "Features fire on digits")
    probabilities = []
    for strength in (0.0, 1.0, 2.0, 4.0, 8.0):
        with featurelens.steering(tiny_backend, dictionary, {feature: strength}):
            probabilities.append(float(torch.softmax(tiny_backend.run_full(ids)[0, -1], -1)[token]))
    assert all(b > a for a, b in zip(probabilities, probabilities[1:])), probabilities


def test_positions_prompt_and_generated(tiny_backend, one_thread) -> None:
    dictionary = KINDS["relu"]
    ids = _ids(tiny_backend)
    n = ids.shape[1]
    clean = tiny_backend.run(ids, [HOOK])[HOOK][0]
    with featurelens.steering(tiny_backend, dictionary, {5: 3.0}, positions="prompt", prompt_length=3):
        edited = tiny_backend.run(ids, [HOOK])[HOOK][0]
    changed = (edited - clean).abs().amax(dim=-1) > 0
    assert changed.tolist() == [True] * 3 + [False] * (n - 3)
    # In generation, the prompt is the first forward pass: "generated" leaves it alone ...
    logits = tiny_backend.run_full(ids)
    with featurelens.steering(tiny_backend, dictionary, {5: 3.0}, positions="generated"):
        assert torch.equal(tiny_backend.run_full(ids), logits)
        generated = tiny_backend.model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    with featurelens.steering(tiny_backend, dictionary, {5: 30.0}, positions="generated"):
        steered = tiny_backend.model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    plain = tiny_backend.model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    # ... so the first new token (predicted at the last prompt position) is the unedited one,
    assert steered[0, n] == plain[0, n] == generated[0, n]
    # and later tokens, predicted at generated positions through the KV cache, do change.
    assert not torch.equal(steered, plain)


def test_transcoder_edits_write_at_its_output_hookpoint(tiny_backend, one_thread) -> None:
    torch.manual_seed(1)
    transcoder = create("dictionary_learner", "transcoder", D, 48, activation="relu", skip=True,
                        hookpoint="blocks.0.hook_mlp_in", hookpoint_out="blocks.0.hook_mlp_out").eval()
    ids = _ids(tiny_backend)
    out_hook = "blocks.0.hook_mlp_out"
    clean = tiny_backend.run(ids, ["blocks.0.hook_mlp_in", out_hook])
    with featurelens.steering(tiny_backend, transcoder, {}):
        assert torch.equal(tiny_backend.run(ids, [out_hook])[out_hook], clean[out_hook])
    with featurelens.steering(tiny_backend, transcoder, {4: 2.0}):
        edited = tiny_backend.run(ids, [out_hook])[out_hook]
    torch.testing.assert_close(edited - clean[out_hook], (2.0 * transcoder.W_dec[4]).expand_as(edited).detach(),
                               atol=1e-5, rtol=1e-5)
    # Clamping sets the feature's decoded contribution: the output moves by (c - f) W_dec[i].
    f = transcoder.encode(clean["blocks.0.hook_mlp_in"][0])[:, 6]
    with featurelens.steering(tiny_backend, transcoder, {6: ("clamp", 3.0)}):
        edited = tiny_backend.run(ids, [out_hook])[out_hook][0]
    expected = (3.0 - f)[:, None] * transcoder.W_dec[6][None, :]
    torch.testing.assert_close(edited - clean[out_hook][0], expected.detach(), atol=1e-5, rtol=1e-5)


def test_edit_syntax() -> None:
    assert parse_edit("123=+8") == Edit(123, "add", 8.0)
    assert parse_edit("7=-2.5") == Edit(7, "add", -2.5)
    assert parse_edit("40=0") == Edit(40, "ablate", 0.0)
    assert parse_edit("40=ablate") == Edit(40, "ablate", 0.0)
    assert parse_edit("9=3") == Edit(9, "clamp", 3.0)
    assert parse_edit("9=clamp:3") == Edit(9, "clamp", 3.0)
    assert parse_edit("9=add:3") == Edit(9, "add", 3.0)
    for bad, words in (("9=lots", "not a number"), ("x=1", "not a feature number"), ("9", "FEATURE=VALUE"),
                       ("9=+nan", "not a number")):
        with pytest.raises(FeaturelensError, match=words):
            parse_edit(bad)


def test_bad_edits_are_one_sentence(tiny_backend) -> None:
    dictionary = KINDS["relu"]
    with pytest.raises(FeaturelensError, match="out of range: the dictionary has 64 features"):
        FeatureEditor(tiny_backend, dictionary, {64: 1.0})
    with pytest.raises(FeaturelensError, match="edited twice"):
        FeatureEditor(tiny_backend, dictionary, ["3=+1", "3=0"])
    with pytest.raises(FeaturelensError, match="not a finite number"):
        FeatureEditor(tiny_backend, dictionary, {3: float("inf")})
    with pytest.raises(FeaturelensError, match="Unknown positions"):
        FeatureEditor(tiny_backend, dictionary, {3: 1.0}, positions="middle")
    with pytest.raises(FeaturelensError, match="Unknown hookpoint"):
        FeatureEditor(tiny_backend, dictionary, {3: 1.0}, hookpoint="blocks.1.hook_nothing")


def test_effects_do_not_depend_on_tokens_after_the_last_firing(tiny_backend, one_thread) -> None:
    """measure_feature cuts windows after the last firing position: tokens there change nothing."""
    from featurelens.interventions.effects import measure_feature
    from featurelens.interventions.targets import Target

    dictionary = KINDS["identity"]
    target = Target(tiny_backend, dictionary, "identity-test", HOOK)
    window = _ids(tiny_backend)[0].tolist()
    acts = [1.0, 0.0, 2.0, 0.5] + [0.0] * (len(window) - 4)
    short = measure_feature(target, 3, [window], [acts])
    longer = measure_feature(target, 3, [window + [5, 6, 7]], [acts + [0.0] * 3])
    assert short == longer and short["n_positions"] == 3 and short["mean_kl"] > 0
    assert measure_feature(target, 3, [window], [[0.0] * len(window)]) is None
