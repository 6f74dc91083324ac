"""Dictionaries: the base class, loading by path or pretrained name, readable names, evaluation."""
