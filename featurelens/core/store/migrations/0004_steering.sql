-- Interventions: the measured effect of ablating each feature (featurelens effects).

CREATE TABLE feature_effects (
    dictionary_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    n_windows INTEGER NOT NULL,
    n_positions INTEGER NOT NULL,
    mean_kl DOUBLE,
    max_kl DOUBLE,
    promoted_tokens VARCHAR[],
    promoted_deltas DOUBLE[],
    suppressed_tokens VARCHAR[],
    suppressed_deltas DOUBLE[],
    options JSON,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (dictionary_id, feature)
);
COMMENT ON TABLE feature_effects IS 'Causal effect of ablating a feature on the next-token distribution, over stored windows where it fired (featurelens effects, extract --effects).';
COMMENT ON COLUMN feature_effects.n_windows IS 'Top-activating windows the feature was ablated on.';
COMMENT ON COLUMN feature_effects.n_positions IS 'Positions where the feature fired in those windows: where the effect is measured.';
COMMENT ON COLUMN feature_effects.mean_kl IS 'Mean KL(clean || ablated) of the next-token distribution at the firing positions, in nats.';
COMMENT ON COLUMN feature_effects.max_kl IS 'Largest KL at a single firing position, in nats.';
COMMENT ON COLUMN feature_effects.promoted_tokens IS 'Output tokens whose probability falls most when the feature is ablated (the feature promotes them).';
COMMENT ON COLUMN feature_effects.promoted_deltas IS 'Mean probability drop of each promoted token (clean - ablated).';
COMMENT ON COLUMN feature_effects.suppressed_tokens IS 'Output tokens whose probability rises most when the feature is ablated.';
COMMENT ON COLUMN feature_effects.suppressed_deltas IS 'Mean probability rise of each suppressed token (ablated - clean).';
COMMENT ON COLUMN feature_effects.options IS 'How it was measured: windows per feature, tokens kept.';
