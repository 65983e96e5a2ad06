-- One run's reading, per source file and status; rejected records per reason.
SELECT source, status, coalesce(reason, '') AS reason, n
FROM source_counts
WHERE run_id = $run_id
ORDER BY source, status, n DESC, reason;
