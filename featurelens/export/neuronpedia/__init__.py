"""Neuronpedia export: the folder layout, rows and JSON lines its admin import reads."""
