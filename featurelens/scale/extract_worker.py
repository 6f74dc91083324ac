"""The Ray actor of a sharded extraction: load model and dictionary once, reduce shards.

A plain class (Ray is applied by the driver with ``ray.remote``), so this module never
imports Ray. Each call reduces one shard of windows into a partial state with the same
:class:`BatchReducer` the in-process loop uses, and returns it as bytes; a shard is a
pure function of its windows, so Ray may rerun it after a worker dies.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from featurelens.core.extraction.packing import Window
from featurelens.core.extraction.extractor import BatchReducer, dictionary_id_of
from featurelens.core.extraction.state import ExtractionState, Settings
from featurelens.scale.partial import to_bytes


class ShardReducer:
    """One worker: a model and a dictionary, loaded once, reducing shard after shard."""

    def __init__(self, spec: dict[str, Any], threads: int):
        from featurelens.core.dictionary_loading import check_width, load_dictionary
        from featurelens.core.plugin_host import create

        torch.set_num_threads(max(1, threads))
        lm = create("model_backend", spec["backend"], spec["model"], dtype=spec["dtype"],
                    device=spec["device"])
        sae = load_dictionary(spec["dictionary"], backend=lm, hookpoint=spec["hookpoint"])
        check_width(sae, lm.hookpoint_width(spec["hookpoint"]), spec["hookpoint"], spec["dictionary"])
        if spec.get("dictionary_name"):
            sae.dictionary_id = spec["dictionary_name"]
        sae = sae.to(lm.device).eval()
        self.ids = (lm.model_id, dictionary_id_of(sae, lm.model_id, spec["hookpoint"]))
        self.reduce = BatchReducer(lm, sae, spec["hookpoint"], spec["context"], set(spec["specials"]),
                                   spec["exclude_outlier_norm"])
        self.settings = Settings(**spec["settings"])
        self.batch_size = int(spec["batch_size"])

    def identity(self) -> tuple[str, str, int, str]:
        """(model id, dictionary id, process id, Ray node id): the driver checks the ids
        match its own; tests use the others to kill a worker or count nodes."""
        import ray  # only ever called inside a Ray worker

        return self.ids[0], self.ids[1], os.getpid(), ray.get_runtime_context().get_node_id()

    def reduce_shard(self, tokens: np.ndarray, seq_ids: np.ndarray) -> tuple[bytes, float]:
        """Reduce windows ``tokens [n, context]`` (ids ``seq_ids``) batch by batch."""
        lm, sae = self.reduce.lm, self.reduce.sae
        state = ExtractionState(sae.d_sae, self.reduce.context, self.settings, lm.device)
        windows = [Window(int(seq), row.tolist(), "") for seq, row in zip(seq_ids, tokens, strict=True)]
        seconds = 0.0
        for start in range(0, len(windows), self.batch_size):
            seconds += self.reduce(state, windows[start:start + self.batch_size])
        return to_bytes(state), seconds
