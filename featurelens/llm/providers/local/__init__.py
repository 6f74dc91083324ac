"""The ``local`` provider: a transformers model in this process (prefix cache, workers, batched decode)."""
