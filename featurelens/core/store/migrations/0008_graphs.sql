-- Attribution graphs over transcoder sets (featurelens graph), and the layers of a set.

CREATE TABLE transcoder_layers (
    dictionary_id VARCHAR NOT NULL,
    layer INTEGER NOT NULL,
    feature_offset INTEGER NOT NULL,
    d_sae INTEGER NOT NULL,
    hookpoint VARCHAR NOT NULL,
    hookpoint_out VARCHAR NOT NULL,
    PRIMARY KEY (dictionary_id, layer)
);
COMMENT ON TABLE transcoder_layers IS 'The layers of a transcoder set (one dictionary, one transcoder per layer): feature f of the set is feature f - feature_offset of the layer whose range holds it.';
COMMENT ON COLUMN transcoder_layers.feature_offset IS 'Global index of the layer''s first feature: global = feature_offset + local index.';
COMMENT ON COLUMN transcoder_layers.d_sae IS 'Features of this layer''s transcoder; its global indices are feature_offset .. feature_offset + d_sae - 1.';
COMMENT ON COLUMN transcoder_layers.hookpoint IS 'Where the layer''s transcoder reads (the MLP input, blocks.L.ln2.hook_normalized).';
COMMENT ON COLUMN transcoder_layers.hookpoint_out IS 'What it predicts (the MLP output, blocks.L.hook_mlp_out).';

CREATE TABLE graphs (
    graph_id VARCHAR PRIMARY KEY,
    dictionary_id VARCHAR NOT NULL,
    model_id VARCHAR NOT NULL,
    prompt VARCHAR NOT NULL,
    prompt_tokens VARCHAR[] NOT NULL,
    targets JSON NOT NULL,
    node_threshold DOUBLE NOT NULL,
    edge_threshold DOUBLE NOT NULL,
    max_feature_nodes INTEGER NOT NULL,
    replacement_score DOUBLE,
    completeness_score DOUBLE,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE graphs IS 'Attribution graphs: how a prompt''s target logits are built from transcoder features, error terms and token embeddings (featurelens graph).';
COMMENT ON COLUMN graphs.graph_id IS 'Hash of the transcoder set, model, prompt, targets and thresholds: building the same graph again replaces it.';
COMMENT ON COLUMN graphs.dictionary_id IS 'The transcoder set whose features are the graph''s feature nodes.';
COMMENT ON COLUMN graphs.prompt_tokens IS 'Each prompt token decoded on its own; graph_nodes.position indexes this list.';
COMMENT ON COLUMN graphs.targets IS 'The attributed logits: a list of {token, token_id, probability, logit} or, for a difference, {token: "A-B", plus, minus, value}.';
COMMENT ON COLUMN graphs.node_threshold IS 'Pruning: feature nodes kept until this fraction of cumulative influence on the targets is reached.';
COMMENT ON COLUMN graphs.edge_threshold IS 'Pruning: edges kept until this fraction of cumulative edge influence is reached.';
COMMENT ON COLUMN graphs.max_feature_nodes IS 'At most this many feature nodes were attributed (the most active by influence order).';
COMMENT ON COLUMN graphs.replacement_score IS 'Fraction of the targets'' end-to-end influence that reaches them from token embeddings through features rather than error terms (1 = no error at all).';
COMMENT ON COLUMN graphs.completeness_score IS 'Fraction of the direct input to every node (features, targets) that comes from features and embeddings rather than error terms, weighted by influence.';

CREATE TABLE graph_nodes (
    graph_id VARCHAR NOT NULL,
    node_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    layer INTEGER NOT NULL,
    position INTEGER NOT NULL,
    feature INTEGER,
    token VARCHAR,
    activation DOUBLE,
    influence DOUBLE,
    kept BOOLEAN NOT NULL,
    label VARCHAR,
    label_score DOUBLE,
    label_source VARCHAR,
    PRIMARY KEY (graph_id, node_id)
);
COMMENT ON TABLE graph_nodes IS 'Nodes of an attribution graph: active transcoder features, error terms, token embeddings and target logits.';
COMMENT ON COLUMN graph_nodes.node_id IS 'Neuronpedia style: feature "L_F_P" (layer, feature index in the set, position), error "L_error_P", embedding "E_T_P" (token id), logit "logit_T_P" for the target token id (difference targets: "logit_A-B_P" with both ids).';
COMMENT ON COLUMN graph_nodes.kind IS 'feature, error, embedding or logit.';
COMMENT ON COLUMN graph_nodes.layer IS 'Transformer layer of a feature or error node; -1 for embeddings, the number of layers for logits.';
COMMENT ON COLUMN graph_nodes.position IS 'Prompt position (index into graphs.prompt_tokens).';
COMMENT ON COLUMN graph_nodes.feature IS 'Feature index in the transcoder set''s dictionary (joins features, explanations, scores); NULL for other kinds.';
COMMENT ON COLUMN graph_nodes.token IS 'The prompt token at the position; for logits, the target token.';
COMMENT ON COLUMN graph_nodes.activation IS 'Feature activation; for logits the target''s probability (difference targets: the logit difference); NULL for errors and embeddings.';
COMMENT ON COLUMN graph_nodes.influence IS 'Total (direct and indirect) attribution from this node to the targets, weighted by target probability, normalised by the targets'' total input.';
COMMENT ON COLUMN graph_nodes.kept IS 'Survived pruning (node threshold, then nodes left without kept edges); embeddings and logits always survive, error nodes are pruned like features.';
COMMENT ON COLUMN graph_nodes.label IS 'Best-scored explanation of the feature in the store, else a token-lookup label made when the graph was built.';
COMMENT ON COLUMN graph_nodes.label_score IS 'Score of that explanation (highest across scorers); NULL when unscored.';
COMMENT ON COLUMN graph_nodes.label_source IS 'explainer:llm of the label (token-lookup:offline:none for labels made without an LLM).';

CREATE TABLE graph_edges (
    graph_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    weight DOUBLE NOT NULL,
    kept BOOLEAN NOT NULL
);
COMMENT ON TABLE graph_edges IS 'Direct effects between graph nodes in the local replacement model: d target input / d source, times the source''s activation.';
COMMENT ON COLUMN graph_edges.source IS 'graph_nodes.node_id of the upstream node.';
COMMENT ON COLUMN graph_edges.target IS 'graph_nodes.node_id of the downstream node (a feature''s pre-activation or a logit).';
COMMENT ON COLUMN graph_edges.weight IS 'Signed direct effect; edges between nodes that were pruned are not stored.';
COMMENT ON COLUMN graph_edges.kept IS 'Survived edge pruning (edge threshold).';
