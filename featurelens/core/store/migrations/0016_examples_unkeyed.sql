-- examples without a primary-key index. Extraction writes each dictionary's examples once,
-- after deleting the old ones, in ascending feature order, so (dictionary_id, feature, kind,
-- rank) is unique by construction; the index only cost time and memory at write (at a
-- million features it indexed 52 million rows). Readers filter on dictionary_id and feature,
-- which DuckDB's per-row-group min/max answers because rows arrive in feature order.
-- DuckDB cannot drop a constraint, so the table is rebuilt with its rows in stored order.
CREATE TABLE examples_unkeyed (
    dictionary_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    corpus_id VARCHAR NOT NULL,
    sequence_id BIGINT NOT NULL,
    activations FLOAT[] NOT NULL,
    max_activation FLOAT NOT NULL,
    max_position INTEGER NOT NULL,
    quantile INTEGER
);
INSERT INTO examples_unkeyed SELECT dictionary_id, feature, kind, rank, corpus_id, sequence_id, activations,
    max_activation, max_position, quantile FROM examples;
DROP TABLE examples;
ALTER TABLE examples_unkeyed RENAME TO examples;
COMMENT ON TABLE examples IS 'Context windows shown to explainers and scorers, with the feature''s activation at every token. One row per (dictionary_id, feature, kind, rank), unique by construction (extraction rewrites a dictionary''s rows whole); no index, rows stored in feature order.';
COMMENT ON COLUMN examples.kind IS 'top (highest max activation), quantile (sampled across activation quantiles) or random (non-activating).';
COMMENT ON COLUMN examples.rank IS '0-based order within the kind (top: by activation, descending).';
COMMENT ON COLUMN examples.activations IS 'Activation at every token of the window; joins sequences.tokens position by position.';
COMMENT ON COLUMN examples.quantile IS 'For quantile examples, which quantile bin (0 = lowest) the window was drawn from.';
