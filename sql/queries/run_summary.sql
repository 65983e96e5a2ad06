-- One run in figures. Outcomes and scores cover every trajectory the run covers (a rerun
-- counts what earlier runs of the same command finished); the work figures (revisions,
-- tokens, completed_here) count only what this run did itself.
WITH o AS (
    SELECT o.*, o.run_id = $run_id AS finished_here
    FROM trajectories t JOIN outcomes o ON o.trajectory_id = t.trajectory_id
    WHERE t.run_id = $run_id
), v AS (SELECT * FROM revisions WHERE run_id = $run_id)
SELECT
    (SELECT count(*) FROM trajectories WHERE run_id = $run_id)                 AS items,
    (SELECT count(*) FROM o WHERE status = 'completed')                        AS completed,
    (SELECT count(*) FROM o WHERE status = 'rejected')                         AS rejected_in_search,
    (SELECT count(*) FROM o WHERE finished_here AND status = 'completed')     AS completed_here,
    (SELECT count(*) FROM rejects WHERE run_id = $run_id AND stage = 'sourcing') AS rejected_inputs,
    (SELECT avg(initial_score) FROM o WHERE status = 'completed')              AS mean_initial_score,
    (SELECT avg(final_score) FROM o WHERE status = 'completed')                AS mean_final_score,
    (SELECT avg(initial_score - final_score) FROM o WHERE status = 'completed') AS mean_score_drop,
    (SELECT sum(accepted_edits)::BIGINT FROM o)                                AS accepted_edits,
    (SELECT count(*) FROM v)                                                   AS revisions,
    (SELECT count(*) FROM v WHERE kind = 'candidate')                          AS candidates,
    (SELECT count(*) FROM v WHERE status = 'unparsable')                       AS unparsable,
    (SELECT count(*) FROM v WHERE status = 'unchanged')                        AS unchanged,
    (SELECT count(*) FROM v WHERE status = 'context_overflow')                 AS context_overflow,
    (SELECT sum(generated_tokens)::BIGINT FROM v)                              AS generated_tokens,
    (SELECT sum(scored_tokens)::BIGINT FROM v)                                 AS scored_tokens,
    (SELECT count(*) FROM run_events WHERE run_id = $run_id AND status = 'retrying') AS model_retries;
