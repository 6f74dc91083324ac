"""Interventions on dictionary features: edits spliced into a running model (steering),
causal ablation effects stored per feature, the intervention scorer's generation, and
the steering parts of ``featurelens serve``.

``featurelens.steering(model, dictionary, {123: 8.0})`` is the entry point; the CLI is
``featurelens steer`` and ``featurelens effects`` (:mod:`featurelens.plugins.steering_commands`).
Submodules load lazily, so the browser can show stored effects without importing torch.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"Edit": "edits", "normalize_edits": "edits", "parse_edit": "edits",
            "FeatureEditor": "hooks", "steering": "hooks"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"featurelens.interventions.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
