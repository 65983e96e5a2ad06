-- Every revision of the trajectories whose trajectory or example id starts with $item, the
-- most recently worked-on trajectory first; a resumed one's history spans several runs.
SELECT v.*, t.example_id, x.query
FROM revisions v
JOIN trajectories t USING (trajectory_id, run_id)
JOIN examples x USING (example_id)
WHERE starts_with(v.trajectory_id, $item) OR starts_with(t.example_id, $item)
ORDER BY max(v.created_at) OVER (PARTITION BY v.trajectory_id) DESC, v.trajectory_id, v.step,
         v.candidate_index NULLS FIRST;
