"""Interventions on dictionary features: edits spliced into a running model (steering),
causal ablation effects stored per feature, and the intervention scorer's generation.

``featurelens.steering(model, dictionary, {123: 8.0})`` is the entry point; the CLI is
``featurelens steer`` and ``featurelens effects`` (:mod:`featurelens.plugins.steering_commands`).
"""

from featurelens.interventions.edits import Edit, normalize_edits, parse_edit
from featurelens.interventions.hooks import FeatureEditor, steering

__all__ = ["Edit", "FeatureEditor", "normalize_edits", "parse_edit", "steering"]
