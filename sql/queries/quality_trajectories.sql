-- Every completed trajectory of a run with what the output checks read: the final thinking,
-- its example, the scores, and how the initial generation ended. Ordered as the export is,
-- so "earlier" in duplicate detection means earlier in the source files.
SELECT t.trajectory_id, t.run_id, t.example_id, x.query, x.reference AS answer,
       v.thinking, v.thinking_tokens, o.steps,
       -- Verified (float32) where the search verified them: a gain the scorer's dtype cannot resolve is not one.
       coalesce(o.initial_verified_score, o.initial_score) AS initial_score,
       coalesce(o.final_verified_score, o.final_score) AS final_score,
       i.finish_reason AS initial_finish_reason,
       -- The controls (tasks/controls.py), float32 on both sides; NULL where none was computed.
       c.thinking_gain, c.specificity, c.no_thinking_score, c.other_thinking_score,
       c.final_score AS control_final_score, c.donor_trajectory_id
FROM trajectories t
JOIN outcomes o ON o.trajectory_id = t.trajectory_id
JOIN revisions v ON v.revision_id = o.final_revision_id
JOIN examples x ON x.example_id = t.example_id
-- z(0) is the root of the final revision's chain; a resumed search stored it in an earlier run.
LEFT JOIN (SELECT DISTINCT trajectory_id, run_id, revision_id FROM lineage WHERE kind = 'initial') z
    ON z.trajectory_id = o.trajectory_id AND z.run_id = o.run_id
LEFT JOIN revisions i ON i.revision_id = z.revision_id
LEFT JOIN trajectory_controls c ON c.trajectory_id = t.trajectory_id AND c.run_id = t.run_id
WHERE t.run_id = $run_id AND o.status = 'completed'
ORDER BY x.source, length(x.source_record), x.source_record, o.trajectory_id;  -- "line 9" before "line 10"
