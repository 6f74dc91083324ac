"""Training sparse autoencoders and transcoders on streamed activations.

``train_dictionary(backend=..., hookpoint=..., output=...)`` trains on a model;
``train_on_tensors(x, output=...)`` on activations in memory. Both resume after a
kill and return a :class:`TrainResult`.
"""

from __future__ import annotations

from featurelens.core.training.api import (
    checkpoint_dir_for,
    pick_device,
    save_dictionary,
    train_dictionary,
    train_on_source,
    train_on_tensors,
)
from featurelens.core.training.buffer import ShuffleBuffer
from featurelens.core.training.sources import (
    ActivationSource,
    ModelSource,
    TensorSource,
)
from featurelens.core.training.trainer import TrainConfig, TrainResult, run_training

#: ``featurelens.core.training.train`` is the same as :func:`train_dictionary`.
train = train_dictionary

__all__ = [
    "ActivationSource", "ModelSource", "ShuffleBuffer", "TensorSource", "TrainConfig", "TrainResult",
    "checkpoint_dir_for", "pick_device", "run_training", "save_dictionary", "train", "train_dictionary",
    "train_on_source", "train_on_tensors",
]
