"""Explanation embeddings where Neuronpedia's explanation search reads them.

Neuronpedia stores each explanation's embedding in ``Explanation.embedding``, a
``vector(256)`` column, and searches it with the query embedded by OpenAI's
``text-embedding-3-large`` at 256 dimensions (``lib/external/embedding.ts``): only
vectors from that model, at that size, are comparable, so the export asks the same model
for them (``--embeddings openai``). The key comes from ``OPENAI_API_KEY`` and the address
from ``OPENAI_BASE_URL`` when set; neither is ever written to the export or a message.
Without embeddings the rows import the same and Neuronpedia's explanation search simply
does not find them (featurelens's own search by meaning uses its local model, see
:mod:`featurelens.core.store.explanation_search`).
"""

from __future__ import annotations

import math
import os
from typing import Any

from featurelens.core.errors import FeaturelensError
from featurelens.core.redaction import redact

#: The model and size Neuronpedia embeds explanations and queries with.
MODEL = "text-embedding-3-large"
DIMENSIONS = 256
KEY_ENV = "OPENAI_API_KEY"
BASE_ENV = "OPENAI_BASE_URL"
#: Texts per request (OpenAI accepts up to 2,048 inputs a request).
BATCH = 512


def openai_embedder(client: Any | None = None) -> Any:
    """A function texts -> 256-number vectors from ``text-embedding-3-large``; refused in
    one sentence when ``OPENAI_API_KEY`` is not set."""
    if client is None:
        key = os.environ.get(KEY_ENV)
        if not key:
            raise FeaturelensError(
                f"--embeddings openai needs {KEY_ENV} in the environment (Neuronpedia searches "
                f"explanations by {MODEL} embeddings); set it, or leave out --embeddings.")
        import openai

        client = openai.OpenAI(api_key=key, base_url=os.environ.get(BASE_ENV) or None, max_retries=3)

    def embed(texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            chunk = texts[start:start + BATCH]
            try:
                response = client.embeddings.create(model=MODEL, input=chunk, dimensions=DIMENSIONS)
            except Exception as error:  # the SDK's errors carry the request: redact before showing
                raise FeaturelensError(
                    f"Embedding explanations with {MODEL} failed ({redact(' '.join(str(error).split()))[:200]}); "
                    "check OPENAI_API_KEY and the network, then run the same export again to resume.") from None
            vectors = [list(map(float, item.embedding)) for item in sorted(response.data, key=lambda d: d.index)]
            if len(vectors) != len(chunk) or any(len(v) != DIMENSIONS or not all(map(math.isfinite, v))
                                                 for v in vectors):
                raise FeaturelensError(
                    f"The embeddings service answered {len(vectors)} vector(s) for {len(chunk)} text(s), not "
                    f"{DIMENSIONS} finite numbers each; check OPENAI_BASE_URL points at OpenAI.")
            out += vectors
        return out

    return embed


#: ``--embeddings`` choices: the embedding schemes Neuronpedia's explanation search reads,
#: by name -> a factory of the embedder (which refuses at once when its key is missing).
EMBEDDERS: dict[str, Any] = {"openai": openai_embedder}
