-- Search by meaning: one sentence embedding per explanation, compared with cosine similarity.
CREATE TABLE explanation_embeddings (
    explanation_id VARCHAR PRIMARY KEY,
    model VARCHAR NOT NULL,
    embedding FLOAT[384] NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE explanation_embeddings IS 'Each explanation''s text embedded by the installed sentence model (all-MiniLM-L6-v2, unit length), filled by featurelens search and run; rank with array_cosine_similarity(embedding, other), e.g. against another explanation''s row.';
COMMENT ON COLUMN explanation_embeddings.explanation_id IS 'The explanation embedded (explanations.explanation_id; its text never changes under one id).';
COMMENT ON COLUMN explanation_embeddings.model IS 'Sentence model that wrote the vector; vectors of different models are not comparable.';
COMMENT ON COLUMN explanation_embeddings.embedding IS 'Unit-length mean-pooled embedding (384 numbers): array_cosine_similarity(a.embedding, b.embedding) is the cosine, 1 = same meaning.';
