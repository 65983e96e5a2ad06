-- The examples a run worked on (searched, or rejected before the search), for the input
-- checks. Ordered by where they were read, so the first of two duplicates is the one kept.
SELECT x.example_id, x.query, x.reference AS answer, x.source, x.source_record
FROM examples x
WHERE x.example_id IN (
    SELECT example_id FROM trajectories WHERE run_id = $run_id
    UNION
    SELECT example_id FROM rejects WHERE run_id = $run_id AND example_id IS NOT NULL
)
ORDER BY x.source, length(x.source_record), x.source_record, x.example_id;  -- "line 9" before "line 10"
