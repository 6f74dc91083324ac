"""A store argument may be an open :class:`Store` or a path: notebooks hold a store open
and pass it around, scripts pass the file. Functions that take a store accept both."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Union

if TYPE_CHECKING:
    from featurelens.core.store.database import Store

StoreLike = Union["Store", str, os.PathLike, None]


@contextmanager
def using_store(store: StoreLike, *, read_only: bool = False) -> Iterator["Store"]:
    """``store`` itself when it is open (left open), else the store at that path (closed after)."""
    from featurelens.core.store.database import Store

    if isinstance(store, Store):
        yield store
        return
    with Store.open(store, read_only=read_only) as opened:
        yield opened


def store_path(store: StoreLike) -> Path | None:
    """The file of ``store``, for functions that open the store themselves."""
    from featurelens.core.store.database import Store

    if isinstance(store, Store):
        return store.path
    return Path(store) if store is not None else None
