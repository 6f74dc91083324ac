"""Scale-out on Ray: sharded extraction into one store (optional extra ``featurelens[ray]``).

Nothing here imports Ray at module level; :func:`featurelens.scale.cluster.require_ray`
does, when a Ray executor is actually asked for, so the default path never loads it.
"""

from featurelens.scale.extraction import RayExtractResult, extract_on_ray

__all__ = ["RayExtractResult", "extract_on_ray"]
