"""The built-in ``hf`` model backend: any transformers causal LM, read at hookpoints.

The forward pass runs the base model (never the LM head) and is cut short by a hook
that raises once the deepest requested hookpoint has been read, so reading layer 6 of
a 30-layer model costs 7 layers. A hook is used rather than a truncated layer list
because it works unchanged for raw module paths and every family, and it measured the
same speed (benchmarks/extraction.py).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from featurelens.core.model import hookpoints as hp
from featurelens.core.model.causal_lm import CausalLM
from featurelens.core.errors import FeaturelensError


class HFBackend(CausalLM):
    """A transformers causal LM behind :class:`featurelens.core.host.protocols.ModelBackend`:
    :class:`~featurelens.core.model.causal_lm.CausalLM` (loading, ids, hookpoint map) read with
    forward hooks."""

    backend_name = "hf"

    def __init__(self, model: str, *, dtype: str = "float32", device: str | None = "auto",
                 **options: Any):
        super().__init__(model, dtype=dtype, device=device, **options)
        self._widths: dict[str, int] = {}

    def hookpoint_width(self, hookpoint: str) -> int:
        """Width of the activation at ``hookpoint`` (read once from a two-token pass)."""
        if hookpoint not in self._widths:
            probe = torch.zeros(1, 2, dtype=torch.long, device=self.device)
            self._widths[hookpoint] = int(self.run(probe, [hookpoint])[hookpoint].shape[-1])
        return self._widths[hookpoint]

    # -- forward passes ------------------------------------------------------------------
    def run(self, input_ids: torch.Tensor, hookpoints: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations ``[batch, seq, width]`` at ``hookpoints``; stops after the deepest."""
        sites = {name: self.site(name) for name in hookpoints}
        target = self.model.base_model if hp.in_base_model(sites.values(), self.family) else self.model
        with torch.no_grad(), hp.Capture(self.model, sites, stop=True) as capture:
            try:
                target(input_ids=input_ids.to(self.device), use_cache=False)
            except hp.StopForward:
                pass
        missing = [name for name in hookpoints if name not in capture.captured]
        if missing:
            raise FeaturelensError(
                f"Hookpoint {missing[0]!r} was not reached by the forward pass; pick a module "
                "that runs on every forward pass."
            )
        return capture.captured

    def run_full(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits of the whole model (for measuring what stopping early saves)."""
        with torch.no_grad():
            return self.model(input_ids=input_ids.to(self.device), use_cache=False).logits

    def logits_with_patch(self, input_ids: torch.Tensor, hookpoint: str | None,
                          patch: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Full-model logits, with the activation at ``hookpoint`` replaced by ``patch(act)``."""
        if hookpoint is None or patch is None:
            return self.run_full(input_ids)
        sites = {hookpoint: self.site(hookpoint)}
        with torch.no_grad(), hp.Capture(self.model, sites, stop=False, patch=patch):
            return self.model(input_ids=input_ids.to(self.device), use_cache=False).logits
