"""Where the feature store lives by default, without importing DuckDB: every command's
``--store`` help text needs it, and ``featurelens --help`` must stay fast."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORE = "featurelens.duckdb"
ENV_STORE = "FEATURELENS_STORE"


def default_store_path() -> Path:
    """``$FEATURELENS_STORE`` or ``./featurelens.duckdb``."""
    return Path(os.environ.get(ENV_STORE) or DEFAULT_STORE)
