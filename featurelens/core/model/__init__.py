"""The language model side: the embedded default, hookpoint names, reading module outputs."""
