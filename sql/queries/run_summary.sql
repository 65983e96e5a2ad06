-- One run in figures: items, outcomes, scores and work done.
WITH o AS (SELECT * FROM outcomes WHERE run_id = $run_id),
     v AS (SELECT * FROM revisions WHERE run_id = $run_id)
SELECT
    (SELECT count(*) FROM trajectories WHERE run_id = $run_id)                 AS items,
    (SELECT count(*) FROM o WHERE status = 'completed')                        AS completed,
    (SELECT count(*) FROM o WHERE status = 'rejected')                         AS rejected_in_search,
    (SELECT count(*) FROM rejects WHERE run_id = $run_id AND stage = 'sourcing') AS rejected_inputs,
    (SELECT avg(initial_score) FROM o WHERE status = 'completed')              AS mean_initial_score,
    (SELECT avg(final_score) FROM o WHERE status = 'completed')                AS mean_final_score,
    (SELECT avg(initial_score - final_score) FROM o WHERE status = 'completed') AS mean_score_drop,
    (SELECT sum(accepted_edits)::BIGINT FROM o)                                        AS accepted_edits,
    (SELECT count(*) FROM v)                                                   AS revisions,
    (SELECT count(*) FROM v WHERE kind = 'candidate')                          AS candidates,
    (SELECT count(*) FROM v WHERE status = 'unparsable')                       AS unparsable,
    (SELECT sum(generated_tokens)::BIGINT FROM v)                                      AS generated_tokens,
    (SELECT sum(scored_tokens)::BIGINT FROM v)                                         AS scored_tokens;
