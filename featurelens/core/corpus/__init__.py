"""Corpora: a ``--corpus`` string to a registered source, and its train/held-out split."""
