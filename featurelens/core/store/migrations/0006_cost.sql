-- Adaptive scoring: how many test windows a score used and its confidence interval.
ALTER TABLE scores ADD COLUMN n_windows INTEGER;
ALTER TABLE scores ADD COLUMN ci_low DOUBLE;
ALTER TABLE scores ADD COLUMN ci_high DOUBLE;
COMMENT ON COLUMN scores.n_windows IS 'Test windows the score was computed from (adaptive scoring stops early once the interval is narrow).';
COMMENT ON COLUMN scores.ci_low IS 'Lower bound of the score''s confidence interval (bootstrap over windows for correlations, Wilson for accuracies); NULL when undefined.';
COMMENT ON COLUMN scores.ci_high IS 'Upper bound of the score''s confidence interval; NULL when undefined.';
