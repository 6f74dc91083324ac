"""Starting or joining Ray, and the checks made before joining (training, extraction, labeling)."""
