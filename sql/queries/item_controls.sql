-- One trajectory's controls, per run that computed them (latest first): float32 scores of the
-- answer after z*, after no thinking and after another item's thinking, and z*'s gains.
SELECT run_id, final_score, no_thinking_score, thinking_gain,
       other_thinking_score, donor_trajectory_id, specificity, notes, dtype, computed_at
FROM trajectory_controls
WHERE trajectory_id = $trajectory_id
ORDER BY computed_at DESC, run_id;
