"""The Ray actor of a sharded extraction: load model and dictionary once, reduce shards.

A plain class (Ray is applied by the driver with ``ray.remote``), so this module never
imports Ray. Shards are reduced with the same :class:`BatchReducer` the in-process loop
uses, into one state carried across shards (:mod:`featurelens.scale.carried`); the
driver asks for a partial with :meth:`ShardReducer.flush` when it wants to commit and
at the end. A shard the driver must redo (its worker died before flushing it) is
reduced alone and returned at once as bytes.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from featurelens.core.extraction.extractor import (
    BatchReducer,
    dictionary_id_of,
    reading_hookpoint,
    special_ids,
)
from featurelens.core.extraction.packing import Window
from featurelens.core.extraction.state import ExtractionState, Settings, state_device
from featurelens.scale.carried import CarriedState
from featurelens.scale.partial import to_bytes


class ShardReducer:
    """One worker: a model and a dictionary, loaded once, reducing shard after shard."""

    def __init__(self, spec: dict[str, Any], threads: int):
        from featurelens.core.dictionaries.loading import load_dictionary
        from featurelens.core.host.manager import create

        torch.set_num_threads(max(1, threads))
        lm = create("model_backend", spec["backend"], spec["model"], dtype=spec["dtype"],
                    device=spec["device"])
        sae = load_dictionary(spec["dictionary"], backend=lm, hookpoint=spec["hookpoint"])
        hookpoint = reading_hookpoint(sae, spec["hookpoint"], lm, spec["dictionary"])  # a set: blocks.*.<hook>
        if spec.get("dictionary_name"):
            sae.dictionary_id = spec["dictionary_name"]
        sae = sae.to(lm.device).eval()
        self.ids = (lm.model_id, dictionary_id_of(sae, lm.model_id, hookpoint))
        # a worker started before the driver has its tokenizer finds the excluded ids itself;
        # the driver checks they are its own (special_ids())
        specials = (set(spec["specials"]) if "specials" in spec
                    else special_ids(bool(spec["include_special"]), lm.tokenizer))
        self.reduce = BatchReducer(lm, sae, hookpoint, spec["context"], specials,
                                   spec["exclude_outlier_norm"])
        self.settings = Settings(**spec["settings"])
        self.batch_size = int(spec["batch_size"])
        self.device = state_device(sae.d_sae, self.settings, lm.device)  # host memory if it does not fit
        self.carried = CarriedState(sae.d_sae, self.reduce.context, self.settings, self.device)
        self.held: list[int] = []  #: shards folded into ``carried`` since the last flush

    def identity(self) -> tuple[str, str, int, str]:
        """(model id, dictionary id, process id, Ray node id): the driver checks the ids
        match its own; tests use the others to kill a worker or count nodes."""
        import ray  # only ever called inside a Ray worker

        return self.ids[0], self.ids[1], os.getpid(), ray.get_runtime_context().get_node_id()

    def special_ids(self) -> list[int]:
        """The token ids this worker excludes, for the driver to compare with its own."""
        return sorted(self.reduce.specials)

    def reduce_shard(self, tokens: np.ndarray, seq_ids: np.ndarray, index: int = -1,
                     carry: bool = False) -> tuple[bytes | None, float]:
        """Reduce windows ``tokens [n, context]`` (ids ``seq_ids``) batch by batch.

        ``carry`` folds them into the carried state as shard ``index`` and returns no
        bytes; otherwise they are reduced in a state of their own, returned as bytes.
        Either way the second value is the seconds in model + encode.
        """
        lm, sae = self.reduce.lm, self.reduce.sae
        state = (self.carried.state if carry else
                 ExtractionState(sae.d_sae, self.reduce.context, self.settings, self.device))
        windows = [Window(int(seq), row.tolist(), "") for seq, row in zip(seq_ids, tokens, strict=True)]
        seconds = 0.0
        for start in range(0, len(windows), self.batch_size):
            seconds += self.reduce(state, windows[start:start + self.batch_size])
        if carry:
            self.held.append(index)
            return None, seconds
        return to_bytes(state), seconds

    def flush(self) -> tuple[bytes, list[int]]:
        """The partial of the carried shards since the last flush, and their indices."""
        held, self.held = self.held, []
        return self.carried.ship(), held
