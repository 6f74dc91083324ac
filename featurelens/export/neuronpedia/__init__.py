"""Neuronpedia export: the folder layout, rows and JSON lines its admin import reads, and attribution graphs for its graph viewer."""
