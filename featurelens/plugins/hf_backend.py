"""The built-in ``hf`` model backend: any transformers causal LM, read at hookpoints.

The forward pass runs the base model (never the LM head) and is cut short by a hook
that raises once the deepest requested hookpoint has been read, so reading layer 6 of
a 30-layer model costs 7 layers. A hook is used rather than a truncated layer list
because it works unchanged for raw module paths and every family, and it measured the
same speed (benchmarks/extraction.py).
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.core.model import hookpoints as hp
from featurelens.core.model.embedded import (
    EMBEDDED_ALIASES,
    WEIGHTS_NOTE,
    embedded_model_path,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(device: str | None) -> torch.device:
    """``auto``/None -> CUDA when present, else CPU; otherwise the named device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise FeaturelensError(f"Device {device!r} was asked for, but no CUDA GPU is available; "
                               "use --device cpu or auto.")
    return torch.device(device)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """True if the Hugging Face hub answers a TCP connection within ``timeout`` seconds."""
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _local_id(path: Path) -> str:
    config = path / "config.json"
    digest = hashlib.sha256(config.read_bytes() if config.exists() else str(path).encode())
    return f"{path.resolve().name}-{digest.hexdigest()[:8]}"


class HFBackend:
    """A transformers causal LM behind :class:`featurelens.core.host.protocols.ModelBackend`."""

    backend_name = "hf"

    def __init__(self, model: str, *, dtype: str = "float32", device: str | None = "auto",
                 **options: Any):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in DTYPES:
            raise FeaturelensError(f"Unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}.")
        self.device = pick_device(device)
        self.dtype = dtype
        path, self.model_id, self.source = self._locate(model)
        #: Recorded in the store's models row (the embedded model's weights are dequantised).
        self.provenance = {"weights": WEIGHTS_NOTE} if model in EMBEDDED_ALIASES else {}
        kwargs = {"dtype": DTYPES[dtype], **options}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, **self._offline(path))
            self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs, **self._offline(path))
        except FeaturelensError:
            raise
        except (OSError, ValueError) as error:
            if Path(path).exists():
                raise FeaturelensError(
                    f"Cannot load the model in {path} ({' '.join(str(error).split())[:200]}); "
                    "point --model at a folder saved with save_pretrained."
                ) from None
            raise FeaturelensError(
                f"Model {model!r} is not a local folder and the Hugging Face hub could not provide "
                "it (no network, or no such model); pass a local model folder or --model smollm2."
            ) from None
        self.model.to(self.device).eval().requires_grad_(False)
        self.family = hp.detect_family(self.model)
        config = self.model.config
        self.n_layers = int(getattr(config, "num_hidden_layers", None) or config.n_layer)
        self.d_model = int(getattr(config, "hidden_size", None) or config.n_embd)
        self.vocab_size = int(config.vocab_size)
        self.max_context = int(getattr(config, "max_position_embeddings", None)
                               or getattr(config, "n_positions", 0) or 0) or None
        self._widths: dict[str, int] = {}

    # -- loading -------------------------------------------------------------------
    @staticmethod
    def _locate(model: str) -> tuple[str, str, str]:
        """(what from_pretrained gets, the stable model id, the source to record)."""
        if model in EMBEDDED_ALIASES:
            return str(embedded_model_path()), "smollm2-135m-instruct", "embedded:smollm2"
        path = Path(model).expanduser()
        if path.exists():
            if not path.is_dir():
                raise FeaturelensError(
                    f"--model {model} is a file; pass the folder that holds config.json and the "
                    "weights (or a hub id, or smollm2)."
                )
            return str(path), _local_id(path), str(path.resolve())
        if model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise FeaturelensError(f"There is no model folder at {model}; check the path.")
        return model, model, f"hub:{model}"

    @staticmethod
    def _offline(path: str) -> dict[str, Any]:
        """Hub ids load from the local HF cache when the hub is unreachable, instead of
        spending a minute on retries before failing."""
        if Path(path).exists() or os.environ.get("HF_HUB_OFFLINE") or not _hub_reachable():
            return {"local_files_only": True}
        return {}

    # -- hookpoints ------------------------------------------------------------------
    def hookpoints(self) -> list[str]:
        """Every TransformerLens-style name (raw module paths are accepted too)."""
        return hp.tl_hookpoints(self.n_layers, self.family)

    def site(self, hookpoint: str) -> hp.HookSite:
        """Where ``hookpoint`` is read; raise with the valid names if it is unknown."""
        return hp.resolve(self.model, self.family, hookpoint, self.n_layers)

    def hookpoint_width(self, hookpoint: str) -> int:
        """Width of the activation at ``hookpoint`` (read once from a two-token pass)."""
        if hookpoint not in self._widths:
            probe = torch.zeros(1, 2, dtype=torch.long, device=self.device)
            self._widths[hookpoint] = int(self.run(probe, [hookpoint])[hookpoint].shape[-1])
        return self._widths[hookpoint]

    def check_context(self, context: int) -> None:
        """Raise if windows of ``context`` tokens are longer than the model accepts."""
        if self.max_context is not None and context > self.max_context:
            raise FeaturelensError(
                f"A context of {context} tokens is longer than {self.model_id} allows "
                f"({self.max_context}); pass --context {self.max_context} or less."
            )

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

    def unembedding(self, fold_final_norm: bool = False) -> torch.Tensor:
        """``[d_model, vocab]``: the LM head, optionally scaled by the final norm's weight.

        Folding the norm's per-dimension scale makes a direction's logit effect match what
        the model does with it (the normalisation itself, data-dependent, cannot be folded).
        """
        weight = self.model.get_output_embeddings().weight.detach().float()  # [vocab, d_model]
        w_u = weight.T.contiguous()
        if fold_final_norm:
            norm = dict(self.model.named_modules())[self.family.final_norm]
            scale = norm.weight.detach().float()
            if self.family.norm_plus_one:
                scale = 1.0 + scale
            w_u = scale[:, None] * w_u
        return w_u
