-- A run's rejects per stage and reason, most frequent first, with one example message each.
SELECT stage, reason, count(*) AS n, any_value(detail) AS example
FROM rejects
WHERE run_id = $run_id
GROUP BY ALL
ORDER BY n DESC, stage, reason;
