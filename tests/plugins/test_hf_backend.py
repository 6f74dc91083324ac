"""The hf backend on real (tiny, random) Llama, GPT-2, GPT-NeoX and Gemma models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from featurelens.core.errors import FeaturelensError
from featurelens.plugins.hf_backend import HFBackend


@pytest.fixture(scope="module")
def llama(tiny_model_dir: Path) -> HFBackend:
    return HFBackend(str(tiny_model_dir), device="cpu")


def _ids(backend: HFBackend, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, backend.vocab_size, (2, 12), generator=generator)


def _reference(backend: HFBackend, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Activations read independently: hidden states plus our own hooks on submodules."""
    seen: dict[str, torch.Tensor] = {}
    block = backend.model.model.layers[1]
    handles = [
        block.self_attn.register_forward_hook(lambda m, a, o: seen.__setitem__("attn", o[0])),
        block.mlp.register_forward_hook(lambda m, a, o: seen.__setitem__("mlp", o)),
        block.mlp.register_forward_pre_hook(lambda m, a: seen.__setitem__("mlp_in", a[0])),
        block.mlp.down_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("post", a[0])),
    ]
    with torch.no_grad():
        out = backend.model(ids, output_hidden_states=True)
    for handle in handles:
        handle.remove()
    seen["hidden"] = out.hidden_states
    seen["logits"] = out.logits
    return seen


def test_llama_tl_hookpoints_match_independent_reads(llama: HFBackend) -> None:
    ids = _ids(llama)
    ref = _reference(llama, ids)
    names = [f"blocks.1.{h}" for h in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid",
                                       "hook_mlp_in", "ln2.hook_normalized", "mlp.hook_post",
                                       "hook_mlp_out", "hook_resid_post")]
    acts = llama.run(ids, names)
    assert torch.allclose(acts["blocks.1.hook_resid_pre"], ref["hidden"][1])
    assert torch.allclose(acts["blocks.1.hook_attn_out"], ref["attn"])
    assert torch.allclose(acts["blocks.1.hook_resid_mid"], ref["hidden"][1] + ref["attn"], atol=1e-6)
    assert torch.allclose(acts["blocks.1.hook_mlp_in"], ref["mlp_in"])
    assert torch.allclose(acts["blocks.1.ln2.hook_normalized"], ref["mlp_in"])
    assert torch.allclose(acts["blocks.1.mlp.hook_post"], ref["post"])
    assert torch.allclose(acts["blocks.1.hook_mlp_out"], ref["mlp"])
    # the last layer's output goes through the final norm in hidden_states[-1]
    final = llama.model.model.norm(acts["blocks.1.hook_resid_post"])
    assert torch.allclose(final, ref["hidden"][2], atol=1e-6)
    assert llama.hookpoint_width("blocks.1.mlp.hook_post") == llama.model.config.intermediate_size
    assert llama.hookpoint_width("blocks.0.hook_resid_post") == llama.d_model


def test_raw_module_paths_full_and_relative_to_base(llama: HFBackend) -> None:
    ids = _ids(llama, 1)
    ref = _reference(llama, ids)
    full = llama.run(ids, ["model.layers.1.mlp"])["model.layers.1.mlp"]
    relative = llama.run(ids, ["layers.1.mlp"])["layers.1.mlp"]
    assert torch.equal(full, relative) and torch.allclose(full, ref["mlp"])
    assert llama.site("layers.1.mlp").layer == 1


def test_forward_stops_after_the_deepest_hookpoint(llama: HFBackend) -> None:
    calls: list[str] = []
    layer1 = llama.model.model.layers[1].register_forward_hook(lambda *a: calls.append("layer1"))
    head = llama.model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head"))
    norm = llama.model.model.norm.register_forward_hook(lambda *a: calls.append("norm"))
    try:
        llama.run(_ids(llama), ["blocks.0.hook_resid_post", "blocks.0.hook_attn_out"])
        assert calls == []
        llama.run(_ids(llama), ["blocks.1.hook_mlp_out"])
        assert calls == []  # layer 1 never finished: stopped inside it, after its MLP
        llama.run(_ids(llama), ["blocks.1.hook_resid_post"])
        assert calls == ["layer1"]
    finally:
        for handle in (layer1, head, norm):
            handle.remove()


def test_logits_with_patch_and_unembedding(llama: HFBackend) -> None:
    ids = _ids(llama, 2)
    ref = _reference(llama, ids)
    same = llama.logits_with_patch(ids, "blocks.0.hook_resid_post", lambda a: a)
    assert torch.allclose(same, ref["logits"], atol=1e-5)
    ablated = llama.logits_with_patch(ids, "blocks.0.hook_resid_post", torch.zeros_like)
    assert not torch.allclose(ablated, ref["logits"], atol=1e-3)
    pre = llama.logits_with_patch(ids, "blocks.1.hook_mlp_in", lambda a: a * 0)
    assert not torch.allclose(pre, ref["logits"], atol=1e-3)
    w_u = llama.unembedding()
    assert w_u.shape == (llama.d_model, llama.vocab_size)
    assert torch.allclose(w_u, llama.model.lm_head.weight.T)
    folded = llama.unembedding(fold_final_norm=True)
    assert torch.allclose(folded, llama.model.model.norm.weight[:, None] * w_u)
    # the folded unembedding applied to the normalised-but-unscaled residual gives the logits
    resid = llama.run(ids, ["blocks.1.hook_resid_post"])["blocks.1.hook_resid_post"]
    norm = llama.model.model.norm
    unscaled = resid * torch.rsqrt(resid.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    assert torch.allclose(unscaled @ folded, ref["logits"], atol=1e-4)


def test_unknown_hookpoints_say_what_is_valid(llama: HFBackend) -> None:
    with pytest.raises(FeaturelensError, match="Unknown hookpoint 'blocks.0.hook_nope'.*hook_resid_post"):
        llama.run(_ids(llama), ["blocks.0.hook_nope"])
    with pytest.raises(FeaturelensError, match="has 2 layers"):
        llama.hookpoint_width("blocks.7.hook_resid_post")
    assert "blocks.1.hook_mlp_in" in llama.hookpoints()


def _save_family(tmp_path: Path, tokenizer_dir: Path, config) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    folder = tmp_path / config.model_type
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, folder / name)
    return folder


def _family_configs(vocab: int):
    from transformers import Gemma2Config, GemmaConfig, GPT2Config, GPTNeoXConfig

    small = dict(vocab_size=vocab)
    return {
        "gpt2": GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, **small),
        "gpt_neox": GPTNeoXConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64,
                                  use_parallel_residual=False, **small),
        "gemma": GemmaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=8, intermediate_size=64,
                             max_position_embeddings=64, **small),
        "gemma2": Gemma2Config(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=8, intermediate_size=64,
                               max_position_embeddings=64, **small),
    }


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "gemma", "gemma2"])
def test_other_families_resolve_and_stop(family: str, tmp_path: Path, tiny_model_dir: Path,
                                         llama: HFBackend) -> None:
    config = _family_configs(llama.vocab_size)[family]
    backend = HFBackend(str(_save_family(tmp_path, tiny_model_dir, config)), device="cpu")
    assert backend.family.name == family
    ids = _ids(backend)
    with torch.no_grad():
        hidden = backend.model(ids, output_hidden_states=True).hidden_states
    acts = backend.run(ids, ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post",
                             "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out", "blocks.0.hook_mlp_in",
                             "blocks.0.mlp.hook_post", "blocks.0.hook_resid_mid"])
    assert torch.allclose(acts["blocks.0.hook_resid_post"], hidden[1], atol=1e-5)
    mid = acts["blocks.0.hook_resid_pre"] + acts["blocks.0.hook_attn_out"]
    assert torch.allclose(acts["blocks.0.hook_resid_mid"], mid, atol=1e-5)
    assert torch.allclose(acts["blocks.0.hook_resid_post"], mid + acts["blocks.0.hook_mlp_out"], atol=1e-5)
    assert acts["blocks.0.mlp.hook_post"].shape[-1] in (64, 128)
    later = dict(backend.model.named_modules())[f"{backend.family.layers}.1"]
    calls: list[int] = []
    handle = later.register_forward_hook(lambda *a: calls.append(1))
    backend.run(ids, ["blocks.0.hook_resid_post"])
    handle.remove()
    assert calls == []
    w_u = backend.unembedding(fold_final_norm=True)
    assert w_u.shape == (backend.d_model, backend.vocab_size)


def test_gpt_neox_parallel_residual_has_no_resid_mid(tmp_path: Path, tiny_model_dir: Path,
                                                      llama: HFBackend) -> None:
    from transformers import GPTNeoXConfig

    config = GPTNeoXConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4,
                           intermediate_size=64, vocab_size=llama.vocab_size, use_parallel_residual=True)
    backend = HFBackend(str(_save_family(tmp_path, tiny_model_dir, config)), device="cpu")
    with pytest.raises(FeaturelensError, match="in parallel"):
        backend.hookpoint_width("blocks.0.hook_resid_mid")


def test_bad_model_arguments_are_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              tiny_model_dir: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FeaturelensError, match="not a local folder and the Hugging Face hub"):
        HFBackend("someone/no-such-model")
    with pytest.raises(FeaturelensError, match="no model folder"):
        HFBackend(str(tmp_path / "missing" / "model"))
    with pytest.raises(FeaturelensError, match="Unknown dtype"):
        HFBackend(str(tiny_model_dir), dtype="float8")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FeaturelensError, match="Cannot load the model"):
        HFBackend(str(empty))


def test_context_longer_than_the_model_allows(llama: HFBackend) -> None:
    llama.check_context(64)
    with pytest.raises(FeaturelensError, match="longer than .* allows"):
        llama.check_context(llama.max_context + 1)


def test_bfloat16_dtype_loads(tiny_model_dir: Path) -> None:
    backend = HFBackend(str(tiny_model_dir), dtype="bfloat16", device="cpu")
    acts = backend.run(_ids(backend), ["blocks.0.hook_resid_post"])["blocks.0.hook_resid_post"]
    assert acts.dtype == torch.bfloat16


def test_hub_id_without_network_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from featurelens.core.model import causal_lm

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(causal_lm, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(FeaturelensError, match="no network, or no such model"):
        HFBackend("someone/no-such-model")
