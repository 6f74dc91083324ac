"""Scorers: simulation, detection, fuzzing."""
