-- One row per item (trajectory) a run covered: how its search ended, its scores, its work and
-- its verdict. The report's table and the synthesize flow's table artifact read this.
SELECT t.trajectory_id, t.example_id,
       coalesce(o.status, 'unfinished')                              AS status,
       o.reason,
       o.initial_score, o.final_score,
       (o.initial_score - o.final_score) / nullif(o.initial_score, 0) AS relative_improvement,
       o.steps, o.accepted_edits, o.segments,
       d.passed, d.reasons                                           AS failed_checks,
       c.thinking_gain, c.specificity,                               -- the controls (float32), NULL without
       x.category, x.source,
       left(regexp_replace(x.query, '\s+', ' ', 'g'), 120)           AS query
FROM trajectories t
JOIN examples x USING (example_id)
LEFT JOIN outcomes o ON o.trajectory_id = t.trajectory_id
LEFT JOIN trajectory_verdicts d ON d.trajectory_id = t.trajectory_id AND d.run_id = t.run_id
LEFT JOIN trajectory_controls c ON c.trajectory_id = t.trajectory_id AND c.run_id = t.run_id
WHERE t.run_id = $run_id
ORDER BY o.status NULLS LAST, relative_improvement DESC NULLS LAST, t.trajectory_id;
