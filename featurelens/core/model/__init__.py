"""The language model side: the embedded default, hookpoint names, reading module outputs, and
loading a transformers causal LM for every backend that wraps one (causal_lm)."""
