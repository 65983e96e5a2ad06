-- What a run's controls read, per completed trajectory (whichever run ended it), by trajectory_id:
-- the example, the final thinking z*, z(0), the outcome's float32 scores (NULL: not verified) and
-- the scorer the search ran with.
SELECT t.trajectory_id, x.query, x.reference,
       v.thinking AS final_thinking, i.thinking AS initial_thinking,
       o.initial_verified_score, o.final_verified_score,
       t.scorer_fingerprint
FROM trajectories t
JOIN outcomes o ON o.trajectory_id = t.trajectory_id
JOIN revisions v ON v.revision_id = o.final_revision_id
JOIN examples x ON x.example_id = t.example_id
-- z(0) is the root of the final revision's chain; a resumed search stored it in an earlier run.
LEFT JOIN (SELECT DISTINCT trajectory_id, run_id, revision_id FROM lineage WHERE kind = 'initial') z
    ON z.trajectory_id = o.trajectory_id AND z.run_id = o.run_id
LEFT JOIN revisions i ON i.revision_id = z.revision_id
WHERE t.run_id = $run_id AND o.status = 'completed'
ORDER BY t.trajectory_id;
