"""Exports of the feature store: Neuronpedia-compatible JSON, Parquet tables and a
static HTML report (rendered by the same code as ``featurelens serve``)."""
