"""Jobs that chain the stages of featurelens: ``featurelens run`` (train, extract,
explain, score, summarize). They sit above the methods they call."""
