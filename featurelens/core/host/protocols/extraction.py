"""What the extraction stage reads: a model backend (and the optional members the host
reads from one), a corpus of documents, and a dictionary format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterator,
    Protocol,
    Sequence,
    runtime_checkable,
)

from featurelens.core.host.protocols.members import declared

if TYPE_CHECKING:
    import torch

    from featurelens.core.dictionaries.base import Dictionary


# -- model backends -------------------------------------------------------------------
@runtime_checkable
class ModelBackend(Protocol):
    """A loaded language model that can be read at hookpoints."""

    model_id: str  #: stable id stored in the ``models`` table
    tokenizer: Any  #: a transformers tokenizer
    device: "torch.device"
    d_model: int
    n_layers: int

    def hookpoints(self) -> list[str]:
        """Every hookpoint name this model accepts, in TransformerLens naming."""

    def hookpoint_width(self, hookpoint: str) -> int:
        """Width of the activation at ``hookpoint``."""

    def run(self, input_ids: "torch.Tensor", hookpoints: Sequence[str]) -> dict[str, "torch.Tensor"]:
        """Activations ``[batch, seq, width]`` at ``hookpoints``; stops after the deepest."""

    def logits_with_patch(
        self, input_ids: "torch.Tensor", hookpoint: str | None, patch: Any = None
    ) -> "torch.Tensor":
        """Full-model logits, with the output at ``hookpoint`` replaced by ``patch(act)``."""

    def unembedding(self, fold_final_norm: bool = False) -> "torch.Tensor":
        """``[d_model, vocab]`` matrix mapping a residual direction to output logits."""


class ModelBackendBase:
    """A base for model backends: the required members, and every optional one the host
    reads, with its default (read through :func:`declared`, never ``getattr``).

    The optional members fall in two groups. Recorded in the store's ``models`` row and
    checked before a long run: ``backend_name``, ``source``, ``vocab_size``, ``dtype``,
    ``family``, ``provenance``, ``check_context``, ``max_context``. Needed to edit
    activations (``steer``, ``effects``, the ``intervention`` scorer): ``model`` (the torch
    module whose submodules are hooked; ``model.generate`` continues text), ``site(name)``
    (hookpoint name -> the :class:`featurelens.core.model.hookpoints.HookSite` in ``model``)
    and ``run_full(input_ids)`` (full-vocabulary logits ``[batch, seq, vocab]``); a backend
    without them is refused there in one sentence. :class:`featurelens.api.CausalLM` gives
    a backend built on a transformers model all of them. Each may be a class or an
    instance attribute (or a method, for the callables).
    """

    model_id: str
    tokenizer: Any
    device: "torch.device"
    d_model: int
    n_layers: int

    #: ``models.backend``: the name it was registered under (the default is the built-in's).
    backend_name: str = "hf"
    #: ``models.source``: where the weights came from (``None``: ``model_id``).
    source: str | None = None
    #: ``models.vocab_size`` (``None``: unknown).
    vocab_size: int | None = None
    #: the weights' dtype, recorded in the ``models`` row's config.
    dtype: Any = None
    #: the module tree's family (an object with a ``name``), recorded in the config.
    family: Any = None
    #: anything else worth recording in the ``models`` row's config (library versions...).
    provenance: dict[str, Any] = {}
    #: ``check_context(context)``: refuse windows longer than the model takes, in one sentence.
    check_context: Callable[[int], None] | None = None
    #: the longest sequence the model takes (steered generation stops short of it).
    max_context: int | None = None
    #: the torch module interventions hook (``None``: the backend cannot be steered).
    model: Any = None
    #: ``site(hookpoint) -> HookSite`` in ``model`` (``None``: cannot be steered).
    site: Callable[[str], Any] | None = None
    #: ``run_full(input_ids) -> logits [batch, seq, vocab]`` (``None``: cannot be steered).
    run_full: Callable[[Any], Any] | None = None

    def hookpoints(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} must implement hookpoints()")

    def hookpoint_width(self, hookpoint: str) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement hookpoint_width()")

    def run(self, input_ids: "torch.Tensor", hookpoints: Sequence[str]) -> dict[str, "torch.Tensor"]:
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    def logits_with_patch(self, input_ids: "torch.Tensor", hookpoint: str | None,
                          patch: Any = None) -> "torch.Tensor":
        raise NotImplementedError(f"{type(self).__name__} must implement logits_with_patch()")

    def unembedding(self, fold_final_norm: bool = False) -> "torch.Tensor":
        raise NotImplementedError(f"{type(self).__name__} must implement unembedding()")


#: What a backend must offer to have its activations edited (steer, effects, the
#: intervention scorer); each is declared on :class:`ModelBackendBase` with ``None``.
STEERING_MEMBERS = ("model", "site", "run_full")


def steering_missing(backend: Any) -> list[str]:
    """The :data:`STEERING_MEMBERS` ``backend`` lacks (empty: it can be steered)."""
    return [name for name in STEERING_MEMBERS if declared(backend, name, ModelBackendBase) is None]


# -- corpora ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Document:
    """One document of a corpus, with where it came from."""

    text: str
    ref: str  #: file path, ``path#row`` or dataset row id


@runtime_checkable
class CorpusSource(Protocol):
    """Documents, read lazily so corpora larger than memory stream."""

    def fingerprint(self) -> str:
        """A stable string identifying the corpus contents (used in corpus ids)."""

    def __iter__(self) -> Iterator[Document]: ...


# -- dictionary formats ----------------------------------------------------------------
@runtime_checkable
class DictionaryFormat(Protocol):
    """An on-disk dictionary format."""

    name: str

    def detect(self, path: str) -> bool:
        """True if ``path`` looks like this format (cheap: file names, config keys)."""

    def load(self, path: str, **options: Any) -> "Dictionary":
        """Read the dictionary at ``path``; it must encode exactly as the writer does.

        Optional: ``decoder_rows(path, features) -> Tensor | None``, rows ``features``
        (ascending ids) of the loaded dictionary's ``decoder_directions()`` read without
        loading the rest; lazy logit effects use it (None, or no such member: the
        dictionary is loaded whole)."""

    def save(self, dictionary: "Dictionary", path: str) -> None:
        """Write ``dictionary`` (raise FeaturelensError if the format is read-only)."""
