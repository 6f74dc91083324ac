"""The ``nnsight`` model backend: hookpoints read by tracing the model with nnsight.

featurelens loads the model (:class:`featurelens.api.CausalLM`: the same folder, hub id
or ``smollm2`` as the ``hf`` backend, so the same ``model_id``, tokenizer and hookpoint
names) and nnsight's ``LanguageModel`` wraps it. Every read and every patch is an
nnsight trace: activations come from nnsight's cache of the hookpoints' modules, the
trace stops once the deepest requested block has run, and a patch replaces a module's
input or output inside the trace.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from featurelens.api import CausalLM, FeaturelensError


def _first_tensor(value: Any) -> torch.Tensor:
    """A module's activation: the tensor itself, or the first one of a tuple or list."""
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value


class NNsightBackend:
    """A :class:`featurelens.api.ModelBackend` over an nnsight ``LanguageModel``."""

    backend_name = "nnsight"

    def __init__(self, model: str, *, dtype: str = "float32", device: str | None = "auto",
                 **options: Any):
        from nnsight import LanguageModel

        self.lm = CausalLM(model, dtype=dtype, device=device, **options)
        for name in ("model_id", "source", "provenance", "tokenizer", "device", "dtype", "family",
                     "n_layers", "d_model", "vocab_size", "max_context"):
            setattr(self, name, getattr(self.lm, name))
        self.model = LanguageModel(self.lm.model, tokenizer=self.lm.tokenizer)
        self._widths: dict[str, int] = {}

    # -- hookpoints ------------------------------------------------------------------
    def hookpoints(self) -> list[str]:
        """Every TransformerLens-style name (raw module paths are accepted too)."""
        return self.lm.hookpoints()

    def hookpoint_width(self, hookpoint: str) -> int:
        """Width of the activation at ``hookpoint`` (read once from a two-token pass)."""
        if hookpoint not in self._widths:
            probe = torch.zeros(1, 2, dtype=torch.long, device=self.device)
            self._widths[hookpoint] = int(self.run(probe, [hookpoint])[hookpoint].shape[-1])
        return self._widths[hookpoint]

    def check_context(self, context: int) -> None:
        """Raise if windows of ``context`` tokens are longer than the model accepts."""
        self.lm.check_context(context)

    def _envoy(self, path: str) -> Any:
        """nnsight's proxy of the module at ``path`` (a dotted path in the transformers model)."""
        envoy = self.model
        for part in path.split("."):
            envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
        return envoy

    def _after_block(self, layer: int) -> str:
        """The module that runs right after block ``layer``: the next block or the final norm.

        A trace is stopped when that module is reached, not at the block's own output,
        so nnsight has cached every activation of the block by then."""
        if layer + 1 < self.n_layers:
            return f"{self.family.layers}.{layer + 1}"
        return self.family.final_norm

    # -- forward passes ------------------------------------------------------------------
    def run(self, input_ids: torch.Tensor, hookpoints: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations ``[batch, seq, width]`` at ``hookpoints``; stops after the deepest block."""
        sites = {name: self.lm.site(name) for name in hookpoints}
        modules = sorted({site.module for site in sites.values()})
        layers = [site.layer for site in sites.values()]
        wants_inputs = any(site.where == "input" for site in sites.values())
        with torch.no_grad(), self.model.trace(input_ids.to(self.device), use_cache=False) as tracer:
            cache = tracer.cache(modules=[self._envoy(m) for m in modules], device=self.device,
                                 include_inputs=wants_inputs)
            if None not in layers:  # every site is inside a block: later blocks need not run
                self._envoy(self._after_block(max(layers))).inputs
                tracer.stop()
        found: dict[str, torch.Tensor] = {}
        for name, site in sites.items():
            entry = cache.get(f"model.{site.module}")
            value = None if entry is None else (entry.output if site.where == "output" else entry.inputs)
            if value is None:
                raise FeaturelensError(
                    f"Hookpoint {name!r} was not reached by the forward pass; pick a module "
                    "that runs on every forward pass.")
            if site.where == "input":
                args, kwargs = value
                value = args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))
            found[name] = _first_tensor(value)
        return found

    def run_full(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits of the whole model."""
        with torch.no_grad(), self.model.trace(input_ids.to(self.device), use_cache=False):
            logits = self.model.output.logits.save()
        return logits

    def logits_with_patch(self, input_ids: torch.Tensor, hookpoint: str | None,
                          patch: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Full-model logits, with the activation at ``hookpoint`` replaced by ``patch(act)``."""
        if hookpoint is None or patch is None:
            return self.run_full(input_ids)
        site = self.lm.site(hookpoint)
        envoy = self._envoy(site.module)
        with torch.no_grad(), self.model.trace(input_ids.to(self.device), use_cache=False):
            if site.where == "output":
                output = envoy.output
                if isinstance(output, tuple):
                    envoy.output = (patch(_first_tensor(output)), *output[1:])
                else:
                    envoy.output = patch(output)
            else:
                args, kwargs = envoy.inputs
                if args:
                    envoy.inputs = ((patch(args[0]), *args[1:]), kwargs)
                else:
                    key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
                    envoy.inputs = (args, {**kwargs, key: patch(kwargs[key])})
            logits = self.model.output.logits.save()
        return logits

    def unembedding(self, fold_final_norm: bool = False) -> torch.Tensor:
        """``[d_model, vocab]``: the LM head, optionally scaled by the final norm's weight."""
        return self.lm.unembedding(fold_final_norm)
