-- Per source file of a run: examples worked on, trajectories completed, trajectories passing.
SELECT x.source,
       count(DISTINCT x.example_id) AS examples,
       count(DISTINCT o.trajectory_id) FILTER (WHERE o.status = 'completed') AS completed,
       count(DISTINCT d.trajectory_id) FILTER (WHERE d.passed) AS passed
FROM trajectories t
JOIN examples x ON x.example_id = t.example_id
LEFT JOIN outcomes o ON o.trajectory_id = t.trajectory_id
LEFT JOIN trajectory_verdicts d ON d.trajectory_id = t.trajectory_id AND d.run_id = t.run_id
WHERE t.run_id = $run_id
GROUP BY ALL
ORDER BY x.source;
