-- The final revision of every completed trajectory a run covers (ended by it or by an earlier
-- run of the same command), with its verdict from the run's latest validation (passed is NULL while the run has not been validated).
SELECT t.trajectory_id, t.run_id, v.revision_id, t.example_id,
       x.query, v.thinking, x.reference AS answer,
       o.initial_score, v.score AS final_score, v.nll, v.ppl, v.thinking_tokens,
       o.steps, o.accepted_edits, x.category, x.language, x.source, x.source_record, t.prompt_version,
       d.validation_id, d.passed, d.failed_checks, d.reasons AS failed_reasons
FROM trajectories t
JOIN outcomes o ON o.trajectory_id = t.trajectory_id
JOIN revisions v ON v.revision_id = o.final_revision_id
JOIN examples x ON x.example_id = t.example_id
LEFT JOIN trajectory_verdicts d ON d.trajectory_id = t.trajectory_id AND d.run_id = t.run_id
WHERE t.run_id = $run_id AND o.status = 'completed'
ORDER BY x.source, length(x.source_record), x.source_record, o.trajectory_id;  -- "line 9" before "line 10"
