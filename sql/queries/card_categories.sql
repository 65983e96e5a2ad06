-- Completed and passing trajectories of a run per category (NULL category: '(none)').
SELECT coalesce(x.category, '(none)') AS category,
       count(*) AS completed,
       count(*) FILTER (WHERE d.passed) AS passed
FROM trajectories t
JOIN outcomes o ON o.trajectory_id = t.trajectory_id
JOIN examples x ON x.example_id = t.example_id
LEFT JOIN trajectory_verdicts d ON d.trajectory_id = t.trajectory_id AND d.run_id = t.run_id
WHERE t.run_id = $run_id AND o.status = 'completed'
GROUP BY ALL
ORDER BY passed DESC, completed DESC, category;
