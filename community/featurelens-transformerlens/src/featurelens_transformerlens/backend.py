"""The ``transformerlens`` model backend: a HookedTransformer read at TransformerLens hook names.

featurelens loads the model (:class:`featurelens.api.CausalLM`: the same folder, hub id
or ``smollm2`` as the ``hf`` backend, so the same ``model_id`` and the same tokenizer),
and TransformerLens converts its weights without processing them (no folded norms, no
centred weights), so activations, logits and the unembedding are the model's own.

Hookpoints are TransformerLens's names with TransformerLens's meaning. Where TransformerLens
and the ``hf`` backend name the same place (``hook_resid_pre``, ``hook_resid_mid``,
``hook_resid_post``, ``hook_attn_out``, ``hook_mlp_out``, ``mlp.hook_post``) they read the
same activations; TransformerLens's ``hook_mlp_in`` is the residual before the MLP's
norm and ``ln2.hook_normalized`` is before the norm's weight, and its per-head hooks
(``attn.hook_z`` and the like) are read flattened to ``[batch, seq, heads * d_head]``.
"""

from __future__ import annotations

import contextlib
import copy
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from featurelens.api import CausalLM, FeaturelensError

#: Hooks TransformerLens only calls once a switch is on, and the switch.
_SWITCHES = {
    "hook_mlp_in": "set_use_hook_mlp_in",
    "hook_attn_in": "set_use_attn_in",
    "hook_q_input": "set_use_split_qkv_input",
    "hook_k_input": "set_use_split_qkv_input",
    "hook_v_input": "set_use_split_qkv_input",
    "attn.hook_result": "set_use_attn_result",
}
#: Hooks whose activation is not one vector per token ([batch, head, query, key]).
_NOT_PER_TOKEN = ("hook_pattern", "hook_attn_scores")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_BEFORE_BLOCKS = ("hook_embed", "hook_pos_embed", "hook_tokens")


def _per_token(act: torch.Tensor) -> torch.Tensor:
    """``[batch, seq, ...]`` -> ``[batch, seq, width]``."""
    return act.reshape(*act.shape[:2], -1)


def _rope_theta(config: Any) -> float | None:
    theta = getattr(config, "rope_theta", None)
    if theta is None:  # transformers 5 keeps it in rope_parameters
        theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    return None if theta is None else float(theta)


def hooked_transformer(loaded: CausalLM) -> Any:
    """The HookedTransformer of ``loaded.model``, weights converted and left unprocessed.

    TransformerLens converts the model's own ``config.json`` (written to a scratch folder,
    so it never reaches for the hub and reads no other file), carrying its rotary base.
    """
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    hf = loaded.model
    config = hf.config
    if getattr(config, "rope_scaling", None):
        raise FeaturelensError(
            f"{loaded.model_id} scales its rotary embeddings ({config.rope_scaling}), which "
            "TransformerLens cannot reproduce for a model outside its own list; use --backend hf.")
    if not getattr(config, "architectures", None):
        config.architectures = [type(hf).__name__]
    with tempfile.TemporaryDirectory(prefix="featurelens-tl-") as scratch:
        folder = Path(scratch) / "model"  # TransformerLens reads family words in the path
        folder.mkdir()
        config.to_json_file(folder / "config.json")
        try:
            cfg = loading.get_pretrained_model_config(
                str(folder), hf_cfg=config.to_dict(), fold_ln=False, device=loaded.device,
                dtype=hf.dtype)
        except (NotImplementedError, KeyError, ValueError, AttributeError) as error:
            raise FeaturelensError(
                f"TransformerLens cannot convert {loaded.model_id} ({type(hf).__name__}: {error}); "
                "use --backend hf, which reads any transformers causal LM.") from None
        theta = _rope_theta(config)
        if cfg.positional_embedding_type == "rotary" and theta is not None:
            cfg.rotary_base = theta
        state = loading.get_pretrained_state_dict(str(folder), cfg, hf, dtype=hf.dtype)
    # TransformerLens may change the tokenizer it is given (padding side, stand-in special
    # tokens); windows are cut with featurelens's own, exactly as the hf backend cuts them.
    model = HookedTransformer(cfg, copy.deepcopy(loaded.tokenizer), move_to_device=False,
                              default_padding_side="right")
    model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False,
                                      refactor_factored_attn_matrices=False)
    with contextlib.redirect_stdout(sys.stderr):  # its "Moving model to device" note
        model.to(loaded.device)
    return model.eval().requires_grad_(False)


class TransformerLensBackend:
    """A :class:`featurelens.api.ModelBackend` over TransformerLens's HookedTransformer."""

    backend_name = "transformerlens"

    def __init__(self, model: str, *, dtype: str = "float32", device: str | None = "auto",
                 **options: Any):
        loaded = CausalLM(model, dtype=dtype, device=device, **options)
        self.model_id, self.source, self.provenance = loaded.model_id, loaded.source, loaded.provenance
        self.tokenizer, self.device, self.dtype = loaded.tokenizer, loaded.device, dtype
        self.model = hooked_transformer(loaded)
        del loaded  # the transformers copy of the weights is no longer needed
        cfg = self.model.cfg
        self.n_layers, self.d_model = int(cfg.n_layers), int(cfg.d_model)
        self.vocab_size, self.max_context = int(cfg.d_vocab), int(cfg.n_ctx)
        self._widths: dict[str, int] = {}

    # -- hookpoints ------------------------------------------------------------------
    def hookpoints(self) -> list[str]:
        """Every TransformerLens hook name whose activation is one vector per token."""
        return [name for name in self.model.hook_dict if not name.endswith(_NOT_PER_TOKEN)]

    def _check(self, hookpoints: Sequence[str]) -> None:
        for name in hookpoints:
            if name not in self.model.hook_dict or name.endswith(_NOT_PER_TOKEN):
                examples = ", ".join(f"blocks.0.{h}" for h in ("hook_resid_pre", "hook_attn_out",
                                                               "hook_mlp_out", "hook_resid_post"))
                raise FeaturelensError(
                    f"Unknown hookpoint {name!r} for the transformerlens backend; use a "
                    f"TransformerLens hook name with one vector per token and a layer in "
                    f"0-{self.n_layers - 1} (e.g. {examples}).")
            switch = next((s for suffix, s in _SWITCHES.items() if name.endswith(suffix)), None)
            if switch is not None:
                getattr(self.model, switch)(True)

    def hookpoint_width(self, hookpoint: str) -> int:
        """Width of the activation at ``hookpoint`` (read once from a two-token pass)."""
        if hookpoint not in self._widths:
            probe = torch.zeros(1, 2, dtype=torch.long, device=self.device)
            self._widths[hookpoint] = int(self.run(probe, [hookpoint])[hookpoint].shape[-1])
        return self._widths[hookpoint]

    def check_context(self, context: int) -> None:
        """Raise if windows of ``context`` tokens are longer than the model accepts."""
        if context > self.max_context:
            raise FeaturelensError(
                f"A context of {context} tokens is longer than {self.model_id} allows "
                f"({self.max_context}); pass --context {self.max_context} or less.")

    # -- forward passes ------------------------------------------------------------------
    def _stop_at(self, hookpoints: Sequence[str]) -> int | None:
        """The first block that need not run (None: the whole model)."""
        deepest = -1
        for name in hookpoints:
            block = _BLOCK.match(name)
            if block:
                deepest = max(deepest, int(block[1]))
            elif name not in _BEFORE_BLOCKS:
                return None
        return deepest + 1

    def run(self, input_ids: torch.Tensor, hookpoints: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations ``[batch, seq, width]`` at ``hookpoints``; stops after the deepest block."""
        self._check(hookpoints)
        names = list(dict.fromkeys(hookpoints))
        with torch.no_grad():
            _, cache = self.model.run_with_cache(input_ids.to(self.device), names_filter=names,
                                                 stop_at_layer=self._stop_at(names))
        missing = [name for name in names if name not in cache]
        if missing:
            raise FeaturelensError(
                f"Hookpoint {missing[0]!r} was not reached by the forward pass; pick a hook "
                "that runs on every forward pass.")
        return {name: _per_token(cache[name]) for name in names}

    def run_full(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits of the whole model."""
        with torch.no_grad():
            return self.model(input_ids.to(self.device), return_type="logits")

    def logits_with_patch(self, input_ids: torch.Tensor, hookpoint: str | None,
                          patch: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Full-model logits, with the activation at ``hookpoint`` replaced by ``patch(act)``."""
        if hookpoint is None or patch is None:
            return self.run_full(input_ids)
        self._check([hookpoint])

        def replace(act: torch.Tensor, hook: Any) -> torch.Tensor:
            return patch(_per_token(act)).reshape(act.shape)

        with torch.no_grad():
            return self.model.run_with_hooks(input_ids.to(self.device), return_type="logits",
                                             fwd_hooks=[(hookpoint, replace)])

    def unembedding(self, fold_final_norm: bool = False) -> torch.Tensor:
        """``[d_model, vocab]``: TransformerLens's ``W_U``, optionally scaled by the final
        norm's weight (TransformerLens's Gemma conversion already adds its one)."""
        w_u = self.model.W_U.detach().float()
        scale = getattr(self.model.ln_final, "w", None) if fold_final_norm else None
        if scale is not None:
            w_u = scale.detach().float()[:, None] * w_u
        return w_u.contiguous()
