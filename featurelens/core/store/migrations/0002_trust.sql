-- Trust under faults: every HTTP attempt on record, one current failure per piece of work.

CREATE TABLE llm_attempts (
    attempt_id VARCHAR PRIMARY KEY,
    call_id VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    cache_key VARCHAR NOT NULL,
    provider VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    dictionary_id VARCHAR,
    feature INTEGER,
    outcome VARCHAR NOT NULL,
    http_status INTEGER,
    error VARCHAR,
    latency_s DOUBLE,
    run_id VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
COMMENT ON TABLE llm_attempts IS 'Every request sent to a provider, retries included: reconciles with a provider''s bill and rate-limit dashboard.';
COMMENT ON COLUMN llm_attempts.call_id IS 'The llm_calls row this attempt belongs to (that row is written when the call ends).';
COMMENT ON COLUMN llm_attempts.attempt IS '1 for the first try, 2 for the first retry...';
COMMENT ON COLUMN llm_attempts.outcome IS 'ok (answered), retried (failed, tried again), failed (failed, given up) or interrupted (the process stopped or was cancelled before an answer).';
COMMENT ON COLUMN llm_attempts.http_status IS 'HTTP status of a failed attempt, NULL for a transport error or an answer.';

ALTER TABLE llm_calls ADD COLUMN attempts INTEGER;
COMMENT ON COLUMN llm_calls.attempts IS 'Requests sent for this call (1 + retries; 0 when answered from the cache); each is a row of llm_attempts.';

-- Collapse the rows that reruns piled up: one per (stage, dictionary, feature).
CREATE TEMPORARY TABLE failures_collapsed AS
    SELECT arg_max(run_id, created_at) AS run_id, stage, dictionary_id, feature,
           arg_max(reason, created_at) AS reason, min(created_at) AS created_at,
           count(*)::INTEGER AS attempts, max(created_at) AS updated_at
    FROM failures GROUP BY stage, dictionary_id, feature;
DELETE FROM failures;
ALTER TABLE failures ADD COLUMN method VARCHAR;
ALTER TABLE failures ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE failures ADD COLUMN answer VARCHAR;
ALTER TABLE failures ADD COLUMN updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp;
ALTER TABLE failures ADD COLUMN resolved_at TIMESTAMP;
INSERT INTO failures BY NAME SELECT * FROM failures_collapsed;
DROP TABLE failures_collapsed;
COMMENT ON COLUMN failures.method IS 'Which work failed: explainer or scorer, LLM and options (scores also name the explanation); NULL in rows from before migration 0002.';
COMMENT ON COLUMN failures.attempts IS 'How many runs failed this work; one row per (stage, dictionary_id, feature, method).';
COMMENT ON COLUMN failures.reason IS 'Why the latest attempt failed.';
COMMENT ON COLUMN failures.answer IS 'The start of the answer that could not be read (it is not kept in llm_cache, so a rerun asks again).';
COMMENT ON COLUMN failures.run_id IS 'The run of the latest attempt.';
COMMENT ON COLUMN failures.resolved_at IS 'When the work later succeeded; NULL while the failure is current.';
