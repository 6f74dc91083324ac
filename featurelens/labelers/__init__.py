"""Explainers and the LLM provider layer."""
