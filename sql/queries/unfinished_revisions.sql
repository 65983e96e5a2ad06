-- The stored revisions of every trajectory without an outcome: what a rerun replays to resume it.
-- The columns are RevisionRecord's fields (tasks/records.py).
SELECT revision_id, trajectory_id, parent_id, kind, step, segment_index, candidate_index, segment_text, thinking,
       accepted, status, note, score, verified_score, nll, ppl, scored_tokens, thinking_tokens, generated_tokens, finish_reason
FROM revisions
WHERE trajectory_id NOT IN (SELECT trajectory_id FROM outcomes)
ORDER BY step
