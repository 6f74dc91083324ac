"""What the stages of ``featurelens run`` share: the options, the context, the result.

Kept apart from the runner and the stages so that neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from featurelens.core.store.database import Store

Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """The sizes of a run. Defaults finish in under 10 minutes on 2 CPU cores."""

    model: str = "smollm2"
    corpus: str = "stdlib"
    layer: int = 6
    context: int = 64
    expansion: int = 4
    k: int = 16
    train_tokens: int = 32_768
    extract_tokens: int = 16_384
    label_features: int = 6
    llm: str = "local:smollm2"
    explainer: str = "token-activations"
    scorer: str = "simulation"
    #: Activating (and as many random) windows the simulation scores per feature; the
    #: scorer's default of 50 + 50 suits an API model, not a local one on 2 cores.
    score_windows: int = 10
    #: Activating (and as many random) windows token-check tests every label on.
    offline_windows: int = 20
    #: The embedding scorer (MiniLM, ~1 s a feature on 2 cores) scores this many features'
    #: labels, on this many activating (and as many random) windows each.
    embedding_features: int = 24
    embedding_windows: int = 10
    seed: int = 0
    #: heldout: train on the corpus's training documents, extract on the held-out ones;
    #: all: both on every document (see featurelens.core.corpus.split).
    split: str = "heldout"
    #: How explanations are embedded for ``featurelens search`` (a key of
    #: featurelens.core.store.explanation_search.SEARCH_EMBEDDINGS): local or none.
    embeddings: str = "local"

    @property
    def hookpoint(self) -> str:
        return f"blocks.{self.layer}.hook_resid_post"

    def fingerprint(self, *names: str) -> str:
        """A short hash of the named options: stages key their output on what shaped it."""
        chosen = {name: getattr(self, name) for name in names}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def dictionary_id(self) -> str:
        """Stable id of the dictionary this run trains (same options, same id: resumable)."""
        names = ["model", "corpus", "layer", "context", "expansion", "k", "train_tokens", "seed"]
        # The split shapes the training data; heldout ids also differ from those of runs
        # made before the split existed, whose dictionaries trained on every document.
        key = self.fingerprint(*names, "split")
        name = Path(self.model).name.lower() or "model"
        return f"{name}-l{self.layer}-topk{self.expansion}x-{key}"


@dataclass
class StageResult:
    name: str
    status: str  #: done, skipped (already in the store) or unavailable
    detail: str = ""
    seconds: float = 0.0


@dataclass
class RunContext:
    """What stages share: the open store, the options, the run folder, earlier results."""

    store: Store
    options: RunOptions
    workdir: Path
    echo: Echo
    values: dict[str, Any] = field(default_factory=dict)


Stage = Callable[[RunContext], StageResult]


def workdir_for(store_path: Path) -> Path:
    """Files that do not belong in the store (the trained dictionary, checkpoints)."""
    return store_path.with_name(store_path.stem + ".run")
