"""Evaluation metrics on a real (tiny, random) Llama, checked against cases whose answer
is known: a perfect dictionary, a dictionary that outputs nothing, and direct sums."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import featurelens
from featurelens.core.dictionaries.evaluation import (
    evaluate,
    register_dictionary,
    store_metrics,
)
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.manager import create
from featurelens.plugins.dictionaries import ReluSAE, TopKSAE

HOOK = "blocks.0.hook_resid_post"


pytestmark = pytest.mark.usefixtures("one_thread")




def _perfect(d: int) -> ReluSAE:
    """relu(x) - relu(-x) = x: a dictionary that reconstructs exactly."""
    sae = ReluSAE(d, 2 * d, apply_b_dec_to_input=False, hookpoint=HOOK)
    with torch.no_grad():
        eye = torch.eye(d)
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_a_perfect_dictionary_recovers_everything(tiny_backend) -> None:
    m = evaluate(_perfect(tiny_backend.d_model), tiny_backend, tokens=256, context=32, progress=False)
    assert m["fvu"] < 1e-10 and m["mse"] < 1e-10
    assert abs(m["ce_loss_spliced"] - m["ce_loss_clean"]) < 1e-5
    assert m["kl_div"] < 1e-6
    assert abs(m["ce_loss_recovered"] - 1.0) < 1e-3
    assert m["n_tokens"] > 200  # BOS left out: fewer than 8 windows * 32


def test_an_empty_reconstruction_equals_zero_ablation(tiny_backend) -> None:
    sae = TopKSAE(tiny_backend.d_model, 64, k=4, hookpoint=HOOK)
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.b_dec.zero_()
    m = evaluate(sae, tiny_backend, tokens=256, context=32, progress=False)
    assert abs(m["ce_loss_spliced"] - m["ce_loss_zero_ablation"]) < 1e-5
    assert abs(m["ce_loss_recovered"]) < 1e-3


def test_fvu_l0_dead_dense_match_direct_computation(tiny_backend) -> None:
    from featurelens.core.corpus.resolve import resolve_corpus
    from featurelens.core.extraction.packing import pack, special_mask

    torch.manual_seed(0)
    d = tiny_backend.d_model
    sae = TopKSAE(d, 48, k=5, hookpoint=HOOK)
    with torch.no_grad():
        sae.b_enc[0] = -1e6   # can never be in the top 5 with a positive value: dead
        sae.b_enc[1] = 1e6    # always selected: dense
    m = evaluate(sae, tiny_backend, tokens=128, context=32, windows_per_batch=2, progress=False)
    from featurelens.core.corpus.split import split_corpus

    # evaluate reads the held-out documents (shuffled), never the training ones
    windows = list(pack(split_corpus(resolve_corpus("stdlib"), "heldout"), tiny_backend.tokenizer,
                        context=32, max_windows=4))
    ids = torch.tensor([w.tokens for w in windows])
    x = tiny_backend.run(ids, [HOOK])[HOOK][~special_mask(ids, set(tiny_backend.tokenizer.all_special_ids))]
    with torch.no_grad():
        f = sae.encode(x)
        recon = sae.decode(f)
    fvu = float((x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert m["fvu"] == pytest.approx(fvu, rel=1e-4)
    assert m["l0"] == pytest.approx(float((f > 0).sum(1).float().mean()), rel=1e-6)
    fired = (f > 0).any(0)
    assert m["dead_fraction"] == pytest.approx(float((~fired).float().mean()))
    assert not fired[0] and (f[:, 1] > 0).all()
    assert m["dense_fraction"] == pytest.approx(float(((f > 0).float().mean(0) > 0.1).float().mean()))


def test_metrics_are_stored_per_dictionary(tiny_backend, store_path: Path) -> None:
    sae = _perfect(tiny_backend.d_model)
    m = evaluate(sae, tiny_backend, tokens=64, context=32, progress=False)
    with featurelens.open_store(store_path) as store:
        dictionary_id = register_dictionary(store, sae, model_id=tiny_backend.model_id, hookpoint=HOOK)
        store_metrics(store, dictionary_id, m)
        with pytest.raises(FeaturelensError, match="No dictionary 'nope' in the store"):
            store_metrics(store, "nope", m)
        row = store.execute("SELECT metrics, architecture, d_sae FROM dictionaries WHERE dictionary_id = ?",
                            [dictionary_id])
    stored = json.loads(row[0][0])
    assert stored["fvu"] == pytest.approx(m["fvu"]) and row[0][1] == "relu" and row[0][2] == 2 * tiny_backend.d_model


def test_wrong_width_is_one_sentence(tiny_backend) -> None:
    with pytest.raises(FeaturelensError, match="reads width 7"):
        evaluate(TopKSAE(7, 14, k=2, hookpoint=HOOK), tiny_backend, tokens=32, progress=False)


def test_transcoder_is_spliced_at_its_output_hookpoint(tiny_backend) -> None:
    torch.manual_seed(0)
    d = tiny_backend.d_model
    tc = create("dictionary_learner", "transcoder", d, 4 * d, k=8, skip=True,
                hookpoint="blocks.0.ln2.hook_normalized", hookpoint_out="blocks.0.hook_mlp_out")
    with torch.no_grad():  # an all-zero transcoder splices zeros: exactly the zero-ablation
        tc.W_dec.zero_()
        tc.W_skip.zero_()
    m = evaluate(tc, tiny_backend, tokens=128, context=32, progress=False)
    assert abs(m["ce_loss_spliced"] - m["ce_loss_zero_ablation"]) < 1e-5
    assert m["ce_loss_clean"] != m["ce_loss_zero_ablation"]
    with pytest.raises(FeaturelensError, match="output hookpoint is unknown"):
        tc.config.pop("hookpoint_out")
        evaluate(tc, tiny_backend, tokens=32, progress=False)
