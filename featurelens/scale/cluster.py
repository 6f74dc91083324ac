"""Connecting to Ray for the scale-out stages: an existing cluster (``--address``) or a
small local one.

The connection code is shared with data-parallel training, so it lives in
:mod:`featurelens.core.ray.runtime` (the core may not import this floor); these names
are kept here for the scale modules and their callers.
"""

from __future__ import annotations

from featurelens.core.ray.runtime import (
                                          LOCAL_OBJECT_STORE_BYTES,
                                          ClusterError,
                                          connected,
                                          require_ray,
)

__all__ = ["LOCAL_OBJECT_STORE_BYTES", "ClusterError", "connected", "require_ray"]
