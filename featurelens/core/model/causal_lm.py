"""A ``--model`` string -> a loaded transformers causal LM: tokenizer, stable id, hookpoint map.

Every model backend over a transformers model loads through :class:`CausalLM`: the
built-in ``hf`` backend, and plugins that hand the same model to TransformerLens or
nnsight (it is offered to them in :mod:`featurelens.api`). So a model folder gets one
``model_id``, and so one corpus id and one dictionary id, whichever backend read it, and
two backends' feature tables for the same run can be compared row by row.

:class:`CausalLM` knows where TransformerLens-style hookpoint names live in the
transformers module tree (:mod:`featurelens.core.model.hookpoints`) but runs nothing: how a
forward pass is read is what each backend adds.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any

import torch

from featurelens.core.model import hookpoints as hp
from featurelens.core.model.embedded import EMBEDDED_ALIASES, WEIGHTS_NOTE, embedded_model_path
from featurelens.core.model.quiet import quiet_loading
from featurelens.core.errors import FeaturelensError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(device: str | None) -> torch.device:
    """``auto``/None -> CUDA when present, else CPU; otherwise the named device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise FeaturelensError(f"Device {device!r} was asked for, but no CUDA GPU is available; "
                               "use --device cpu or auto.")
    return torch.device(device)


def hub_reachable(timeout: float = 3.0) -> bool:
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


def locate(model: str) -> tuple[str, str, str]:
    """(what from_pretrained gets, the stable model id, the source to record) for ``model``:
    the embedded model's alias, a local folder, or a hub id."""
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


def model_argument(source: str) -> str:
    """The ``--model`` argument that loads the model whose recorded source is ``source``
    (the third value of :func:`locate`)."""
    if source == "embedded:smollm2":
        return "smollm2"
    return source.removeprefix("hub:")


def _offline(path: str) -> dict[str, Any]:
    """Hub ids load from the local HF cache when the hub is unreachable, instead of
    spending a minute on retries before failing."""
    if Path(path).exists() or os.environ.get("HF_HUB_OFFLINE") or not hub_reachable():
        return {"local_files_only": True}
    return {}


class CausalLM:
    """A transformers causal LM and its tokenizer, in eval mode without gradients, on ``device``.

    ``model`` is a local folder saved with ``save_pretrained``, a hub id (read from the
    local cache when the hub cannot be reached) or the embedded model's name (``smollm2``);
    ``options`` go to ``from_pretrained``. Bad input raises :class:`FeaturelensError`.
    """

    def __init__(self, model: str, *, dtype: str = "float32", device: str | None = "auto",
                 **options: Any):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in DTYPES:
            raise FeaturelensError(f"Unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}.")
        self.device = pick_device(device)
        self.dtype = dtype
        path, self.model_id, self.source = locate(model)
        #: Recorded in the store's models row (the embedded model's weights are dequantised).
        self.provenance = {"weights": WEIGHTS_NOTE} if model in EMBEDDED_ALIASES else {}
        kwargs = {"dtype": DTYPES[dtype], **options}
        try:
            with quiet_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(path, **_offline(path))
                self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs, **_offline(path))
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

    def hookpoints(self) -> list[str]:
        """Every TransformerLens-style name (raw module paths are accepted too)."""
        return hp.tl_hookpoints(self.n_layers, self.family)

    def site(self, hookpoint: str) -> hp.HookSite:
        """Where ``hookpoint`` is read: a module path in ``self.model`` and whether its
        ``input`` or ``output`` is the activation; raise with the valid names if unknown."""
        return hp.resolve(self.model, self.family, hookpoint, self.n_layers)

    def check_context(self, context: int) -> None:
        """Raise if windows of ``context`` tokens are longer than the model accepts."""
        if self.max_context is not None and context > self.max_context:
            raise FeaturelensError(
                f"A context of {context} tokens is longer than {self.model_id} allows "
                f"({self.max_context}); pass --context {self.max_context} or less."
            )

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
