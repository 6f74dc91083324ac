"""``featurelens run``: the whole job on the embedded default, as resumable stages."""
