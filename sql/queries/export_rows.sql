-- The final trajectory of every completed attempt of a run, ready to export.
SELECT o.trajectory_id, o.run_id, v.revision_id, t.example_id,
       x.query AS prompt, v.thinking, x.reference AS answer,
       o.initial_score, v.score AS final_score, v.nll, v.ppl, v.thinking_tokens,
       o.steps, o.accepted_edits, x.category, x.language, x.source, t.prompt_version
FROM outcomes o
JOIN revisions v ON v.revision_id = o.final_revision_id
JOIN trajectories t ON t.trajectory_id = o.trajectory_id AND t.run_id = o.run_id
JOIN examples x ON x.example_id = t.example_id
WHERE o.run_id = $run_id AND o.status = 'completed'
ORDER BY x.source, x.source_record, o.trajectory_id;
