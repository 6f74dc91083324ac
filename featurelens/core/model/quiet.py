"""Model loading without third-party progress bars.

transformers draws its own tqdm bars while it loads weights ("Loading weights") and
huggingface_hub while it fetches files; in featurelens's output they would interleave
with the one progress line each stage owns (:mod:`featurelens.core.progress`). Loads run
inside :func:`quiet_loading`, which turns both libraries' bars off through their own
switches and restores whatever the caller had set.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Run the block with transformers' and huggingface_hub's progress bars disabled."""
    try:
        from transformers.utils import logging as tf_logging
    except ImportError:  # transformers absent: nothing can draw its bars
        yield
        return
    was_enabled = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            tf_logging.enable_progress_bar()
