-- The feature store's first schema. Column comments become docs/schema.md.

CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    config JSON NOT NULL,
    status VARCHAR NOT NULL,
    progress JSON,
    started_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at TIMESTAMP,
    featurelens_version VARCHAR NOT NULL
);
COMMENT ON TABLE runs IS 'One row per job (extract, train, explain, score, run); rerunning the same configuration resumes the same run_id.';
COMMENT ON COLUMN runs.run_id IS 'Stable id derived from the job kind and its configuration.';
COMMENT ON COLUMN runs.kind IS 'extract, train, explain, score or run.';
COMMENT ON COLUMN runs.config IS 'The options the job was started with (never API keys).';
COMMENT ON COLUMN runs.status IS 'running, done or failed.';
COMMENT ON COLUMN runs.progress IS 'Resume state committed with each shard of results.';

CREATE TABLE models (
    model_id VARCHAR PRIMARY KEY,
    backend VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    n_layers INTEGER,
    d_model INTEGER,
    vocab_size INTEGER,
    config JSON,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE models IS 'Language models that activations were read from.';
COMMENT ON COLUMN models.backend IS 'Model backend plugin name, e.g. hf.';
COMMENT ON COLUMN models.source IS 'Local path or hub id the model was loaded from.';

CREATE TABLE dictionaries (
    dictionary_id VARCHAR PRIMARY KEY,
    model_id VARCHAR NOT NULL,
    hookpoint VARCHAR NOT NULL,
    architecture VARCHAR NOT NULL,
    d_in INTEGER NOT NULL,
    d_sae INTEGER NOT NULL,
    format VARCHAR,
    source VARCHAR,
    config JSON,
    metrics JSON,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE dictionaries IS 'Sparse autoencoders, transcoders and other dictionaries whose features are stored.';
COMMENT ON COLUMN dictionaries.hookpoint IS 'Where the dictionary reads the model, in TransformerLens naming (blocks.6.hook_resid_post).';
COMMENT ON COLUMN dictionaries.architecture IS 'Dictionary learner name: identity, topk, batchtopk, relu, jumprelu, transcoder...';
COMMENT ON COLUMN dictionaries.format IS 'File format it was loaded from (saelens, sparsify, ...), NULL if trained here and not exported.';
COMMENT ON COLUMN dictionaries.metrics IS 'Evaluation: L0, FVU, CE loss recovered, KL, dead and dense fractions.';

CREATE TABLE sequences (
    corpus_id VARCHAR NOT NULL,
    sequence_id BIGINT NOT NULL,
    model_id VARCHAR NOT NULL,
    tokens INTEGER[] NOT NULL,
    token_strs VARCHAR[] NOT NULL,
    document VARCHAR,
    PRIMARY KEY (corpus_id, sequence_id)
);
COMMENT ON TABLE sequences IS 'Tokenised context windows, each stored once; examples refer to them.';
COMMENT ON COLUMN sequences.corpus_id IS 'Stable id of the corpus, tokenizer and packing options that produced the window.';
COMMENT ON COLUMN sequences.sequence_id IS 'Position of the window in the packed corpus (0, 1, 2...).';
COMMENT ON COLUMN sequences.token_strs IS 'Each token decoded on its own, for display and prompts.';
COMMENT ON COLUMN sequences.document IS 'Where the window came from (file path, row).';

CREATE TABLE features (
    dictionary_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    corpus_id VARCHAR NOT NULL,
    n_tokens BIGINT NOT NULL,
    fire_count BIGINT NOT NULL,
    density DOUBLE NOT NULL,
    max_activation DOUBLE,
    mean_activation DOUBLE,
    quantiles DOUBLE[],
    histogram_edges DOUBLE[],
    histogram_counts BIGINT[],
    top_logits VARCHAR[],
    top_logit_values DOUBLE[],
    bottom_logits VARCHAR[],
    bottom_logit_values DOUBLE[],
    PRIMARY KEY (dictionary_id, feature)
);
COMMENT ON TABLE features IS 'Per-feature statistics from extraction.';
COMMENT ON COLUMN features.feature IS 'Index of the feature in the dictionary (0-based).';
COMMENT ON COLUMN features.n_tokens IS 'Tokens the feature was measured on (excluded positions not counted).';
COMMENT ON COLUMN features.fire_count IS 'Tokens on which the activation was > 0.';
COMMENT ON COLUMN features.density IS 'fire_count / n_tokens.';
COMMENT ON COLUMN features.mean_activation IS 'Mean activation over the tokens where it fired.';
COMMENT ON COLUMN features.quantiles IS 'Activation quantiles over firing tokens, at the levels in the run config.';
COMMENT ON COLUMN features.histogram_edges IS 'Bin edges of the histogram of firing activations.';
COMMENT ON COLUMN features.top_logits IS 'Output tokens most promoted by the decoder direction through the unembedding.';
COMMENT ON COLUMN features.bottom_logits IS 'Output tokens most suppressed by the decoder direction.';

CREATE TABLE examples (
    dictionary_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    corpus_id VARCHAR NOT NULL,
    sequence_id BIGINT NOT NULL,
    activations FLOAT[] NOT NULL,
    max_activation FLOAT NOT NULL,
    max_position INTEGER NOT NULL,
    quantile INTEGER,
    PRIMARY KEY (dictionary_id, feature, kind, rank)
);
COMMENT ON TABLE examples IS 'Context windows shown to explainers and scorers, with the feature''s activation at every token.';
COMMENT ON COLUMN examples.kind IS 'top (highest max activation), quantile (sampled across activation quantiles) or random (non-activating).';
COMMENT ON COLUMN examples.rank IS '0-based order within the kind (top: by activation, descending).';
COMMENT ON COLUMN examples.activations IS 'Activation at every token of the window; joins sequences.tokens position by position.';
COMMENT ON COLUMN examples.quantile IS 'For quantile examples, which quantile bin (0 = lowest) the window was drawn from.';

CREATE TABLE explanations (
    explanation_id VARCHAR PRIMARY KEY,
    dictionary_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    explainer VARCHAR NOT NULL,
    llm VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    options JSON,
    run_id VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE explanations IS 'Natural-language labels of features; failures are in failures, never here as empty text.';
COMMENT ON COLUMN explanations.explanation_id IS 'Hash of dictionary, feature, explainer, LLM and options: a rerun cannot duplicate it.';
COMMENT ON COLUMN explanations.llm IS 'provider:model that wrote it.';

CREATE TABLE scores (
    score_id VARCHAR PRIMARY KEY,
    explanation_id VARCHAR NOT NULL,
    dictionary_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    scorer VARCHAR NOT NULL,
    llm VARCHAR NOT NULL,
    score DOUBLE,
    status VARCHAR NOT NULL,
    metrics JSON,
    details JSON,
    options JSON,
    n_parse_failures INTEGER NOT NULL DEFAULT 0,
    run_id VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE scores IS 'How well an explanation predicts its feature, per scorer and LLM.';
COMMENT ON COLUMN scores.score IS 'The headline number (simulation: correlation; detection/fuzzing: balanced accuracy); NULL when undefined.';
COMMENT ON COLUMN scores.status IS 'ok, undefined (e.g. constant activations) or failed.';
COMMENT ON COLUMN scores.metrics IS 'All metrics: precision, recall, F1, balanced accuracy...';
COMMENT ON COLUMN scores.details IS 'What is needed to reproduce the score: examples used, true and predicted values.';
COMMENT ON COLUMN scores.n_parse_failures IS 'LLM answers that could not be parsed and were left out.';

CREATE TABLE llm_calls (
    call_id VARCHAR PRIMARY KEY,
    cache_key VARCHAR NOT NULL,
    provider VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    dictionary_id VARCHAR,
    feature INTEGER,
    status VARCHAR NOT NULL,
    error VARCHAR,
    input_tokens BIGINT,
    cached_input_tokens BIGINT,
    output_tokens BIGINT,
    cost_usd DOUBLE,
    latency_s DOUBLE,
    batch_id VARCHAR,
    run_id VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE llm_calls IS 'Every LLM request: tokens, cost, latency, outcome.';
COMMENT ON COLUMN llm_calls.cache_key IS 'Hash of provider, model and request; equal keys share one cached response.';
COMMENT ON COLUMN llm_calls.purpose IS 'explain or score:<scorer>.';
COMMENT ON COLUMN llm_calls.status IS 'ok, cached or error.';

CREATE TABLE llm_cache (
    cache_key VARCHAR PRIMARY KEY,
    response JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE llm_cache IS 'Responses by cache key, so that a rerun or a crash never pays twice.';

CREATE TABLE batches (
    batch_id VARCHAR PRIMARY KEY,
    provider VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    request_count INTEGER NOT NULL,
    requests JSON NOT NULL,
    run_id VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE batches IS 'Provider batch jobs (OpenAI Batch API, Anthropic Message Batches) awaiting collection.';
COMMENT ON COLUMN batches.requests IS 'custom_id -> what the request was for (feature, purpose, cache key).';

CREATE TABLE failures (
    run_id VARCHAR,
    stage VARCHAR NOT NULL,
    dictionary_id VARCHAR,
    feature INTEGER,
    reason VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE failures IS 'Work that did not succeed, with the reason: counted, visible, never a silent zero.';
COMMENT ON COLUMN failures.stage IS 'explain, score:<scorer>, extract...';
