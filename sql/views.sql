-- Derived views over the append-only tables. Users query these; reer reads them too.

-- Each run with its latest status and the figures it recorded at the end.
CREATE OR REPLACE VIEW run_overview AS
SELECT r.run_id, r.flow_name, r.flow_run_id, r.generator_model, r.scorer_model, r.backend, r.dtype,
       r.prompt_version, r.code_version, r.config_hash, r.started_at,
       e.status, e.created_at AS status_at, e.detail,
       r.generator_backend, r.scorer_backend, r.generator_dtype, r.scorer_dtype,
       r.generator_fingerprint, r.scorer_fingerprint
FROM runs r
LEFT JOIN (
    SELECT * FROM run_events QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY created_at DESC) = 1
) e USING (run_id);

-- The lowest-scoring accepted revision of each trajectory, with its example.
CREATE OR REPLACE VIEW best_revisions AS
SELECT v.trajectory_id, v.run_id, v.revision_id, v.step, v.score, v.nll, v.ppl,
       v.thinking, v.thinking_tokens, v.scored_tokens,
       o.initial_score, o.final_score, o.steps, o.accepted_edits, o.reason AS stop_reason,
       t.example_id, x.query, x.reference, x.category, x.language, x.source, x.source_record,
       t.generator_model, t.scorer_model, t.prompt_version, t.config_hash,
       t.generator_fingerprint, t.scorer_fingerprint
FROM revisions v
JOIN trajectories t USING (trajectory_id, run_id)
JOIN examples x USING (example_id)
LEFT JOIN outcomes o ON o.trajectory_id = v.trajectory_id
WHERE v.accepted AND v.score IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY v.trajectory_id ORDER BY v.score, v.created_at DESC) = 1;

-- Per trajectory and search step: what was tried and the best score after it.
CREATE OR REPLACE VIEW score_history AS
WITH steps AS (
    SELECT trajectory_id, run_id, step,
           min(segment_index) AS segment_index,
           count(*) FILTER (WHERE kind = 'candidate') AS candidates,
           count(*) FILTER (WHERE status = 'unparsable') AS unparsable,
           count(*) FILTER (WHERE status = 'unchanged') AS unchanged,
           count(*) FILTER (WHERE status = 'context_overflow') AS context_overflow,
           bool_or(accepted) AS accepted,
           min(score) AS best_candidate_score,
           min(score) FILTER (WHERE accepted) AS accepted_score
    FROM revisions
    GROUP BY ALL
)
-- A resumed trajectory continues in a later run: its history runs across runs, by step.
SELECT *, min(accepted_score) OVER (
           PARTITION BY trajectory_id ORDER BY step ROWS UNBOUNDED PRECEDING) AS best_score
FROM steps;

-- From the source record to the exported row: the example, its trajectory, the chain of
-- accepted revisions from the final one back to z(0) (depth 0 = final), and any exports.
CREATE OR REPLACE VIEW lineage AS
WITH RECURSIVE chain AS (
    SELECT o.trajectory_id, o.run_id, v.revision_id, v.parent_id, 0 AS depth
    FROM outcomes o JOIN revisions v ON v.revision_id = o.final_revision_id
    UNION ALL
    SELECT c.trajectory_id, c.run_id, p.revision_id, p.parent_id, c.depth + 1
    FROM chain c JOIN revisions p ON p.revision_id = c.parent_id
)
SELECT x.source, x.source_record, x.example_id, c.trajectory_id, c.run_id, c.depth,
       c.revision_id, c.parent_id, v.kind, v.step, v.segment_index, v.score,
       e.format AS export_format, e.path AS export_path, e.row_index AS export_row
FROM chain c
JOIN revisions v USING (revision_id)
JOIN trajectories t ON t.trajectory_id = c.trajectory_id AND t.run_id = c.run_id
JOIN examples x ON x.example_id = t.example_id
LEFT JOIN exports e ON e.revision_id = c.revision_id AND c.depth = 0;

-- Rejects counted per run, stage and reason.
CREATE OR REPLACE VIEW reject_counts AS
SELECT run_id, stage, reason, count(*) AS n
FROM rejects GROUP BY ALL;

-- Each run's latest validation.
CREATE OR REPLACE VIEW latest_validations AS
SELECT * FROM validations
QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY created_at DESC, validation_id DESC) = 1;

-- The checks of each run's latest validation (a run validated again keeps its old rows).
CREATE OR REPLACE VIEW latest_checks AS
SELECT c.*
FROM checks c
JOIN latest_validations l USING (run_id, validation_id);

-- Per completed trajectory of a validated run (whichever run ended it): did it pass its own
-- output checks and its example's input checks, and if not, every failed check with its reason.
CREATE OR REPLACE VIEW trajectory_verdicts AS
SELECT t.trajectory_id, t.run_id, t.example_id,
       any_value(c.validation_id) AS validation_id,
       count(c.check_id) AS checks,
       count(c.check_id) FILTER (WHERE NOT c.passed) AS failed_checks,
       count(c.check_id) > 0 AND count(c.check_id) FILTER (WHERE NOT c.passed) = 0 AS passed,
       string_agg(c.check_name || ' (' || c.detail || ')', ' | ' ORDER BY c.suite, c.check_name)
           FILTER (WHERE NOT c.passed) AS reasons
FROM trajectories t
JOIN outcomes o ON o.trajectory_id = t.trajectory_id
JOIN latest_checks c ON c.run_id = t.run_id
    AND (c.trajectory_id = t.trajectory_id OR (c.trajectory_id IS NULL AND c.example_id = t.example_id))
WHERE o.status = 'completed'
GROUP BY ALL;

-- The dataset that passes every check: final thinking, example and scores per trajectory.
CREATE OR REPLACE VIEW passed_trajectories AS
SELECT d.trajectory_id, d.run_id, d.example_id, d.validation_id, v.revision_id,
       x.query, v.thinking, x.reference AS answer, x.category, x.language, x.source, x.source_record,
       o.initial_score, o.final_score, v.nll, v.ppl, v.thinking_tokens, o.steps, o.accepted_edits
FROM trajectory_verdicts d
JOIN outcomes o ON o.trajectory_id = d.trajectory_id
JOIN revisions v ON v.revision_id = o.final_revision_id
JOIN examples x ON x.example_id = d.example_id
WHERE d.passed;

-- Pass rate of every check in each run's latest validation.
CREATE OR REPLACE VIEW check_pass_rates AS
SELECT run_id, validation_id, suite, check_name, any_value(threshold) AS threshold,
       count(*) AS checked, count(*) FILTER (WHERE passed) AS passed,
       round(count(*) FILTER (WHERE passed) / count(*), 4) AS pass_rate
FROM latest_checks
GROUP BY ALL;

-- What each run read, per source file: records per status (loaded, duplicate, known,
-- over_limit, rejected) and, for rejected ones, per reason. `reer sources` prints this.
CREATE OR REPLACE VIEW source_counts AS
SELECT run_id, source, status, reason, count(*) AS n
FROM source_records GROUP BY ALL;

-- Stored examples per category and how the category was decided.
CREATE OR REPLACE VIEW category_counts AS
SELECT coalesce(x.category, '(none)') AS category, c.grp, x.category_source, count(*) AS n,
       round(avg(x.category_confidence), 3) AS mean_confidence
FROM examples x LEFT JOIN categories c ON c.category = x.category
GROUP BY ALL;

-- Per trajectory and run with controls: its final score in float32 (the outcome's verified one,
-- else the controls' re-score of z*), the answer's score after no thinking and after another
-- item's thinking, and how much better z* does. thinking_gain = no_thinking - final and
-- specificity = other_thinking - final: positive means z* explains the answer better.
CREATE OR REPLACE VIEW trajectory_controls AS
WITH c AS (
    SELECT run_id, trajectory_id,
           any_value(score) FILTER (WHERE kind = 'no_thinking')                  AS no_thinking_score,
           any_value(score) FILTER (WHERE kind = 'other_thinking')               AS other_thinking_score,
           any_value(donor_trajectory_id) FILTER (WHERE kind = 'other_thinking') AS donor_trajectory_id,
           any_value(score) FILTER (WHERE kind = 'initial')                      AS initial_rescored,
           any_value(score) FILTER (WHERE kind = 'final')                        AS final_rescored,
           string_agg(kind || ': ' || note, ' | ' ORDER BY kind) FILTER (WHERE note IS NOT NULL) AS notes,
           any_value(dtype) AS dtype, any_value(scorer_fingerprint) AS scorer_fingerprint,
           max(created_at) AS computed_at
    FROM controls
    GROUP BY run_id, trajectory_id
), s AS (
    SELECT c.*,
           coalesce(o.initial_verified_score, c.initial_rescored) AS initial_score,
           coalesce(o.final_verified_score, c.final_rescored)     AS final_score
    FROM c JOIN outcomes o USING (trajectory_id)
)
SELECT run_id, trajectory_id, initial_score, final_score, no_thinking_score, other_thinking_score,
       donor_trajectory_id,
       no_thinking_score - final_score    AS thinking_gain,
       other_thinking_score - final_score AS specificity,
       no_thinking_score - initial_score  AS initial_thinking_gain,
       notes, dtype, scorer_fingerprint, computed_at
FROM s;
