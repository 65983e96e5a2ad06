-- Completed and passing trajectories of a run per category (NULL category: '(none)').
SELECT coalesce(x.category, '(none)') AS category,
       count(*) AS completed,
       count(*) FILTER (WHERE d.passed) AS passed
FROM outcomes o
JOIN trajectories t ON t.trajectory_id = o.trajectory_id AND t.run_id = o.run_id
JOIN examples x ON x.example_id = t.example_id
LEFT JOIN trajectory_verdicts d ON d.trajectory_id = o.trajectory_id AND d.run_id = o.run_id
WHERE o.run_id = $run_id AND o.status = 'completed'
GROUP BY ALL
ORDER BY passed DESC, completed DESC, category;
