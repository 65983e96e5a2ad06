-- Per segment position (0-based): how many search steps rewrote it in this run, how many of
-- those accepted a rewrite, and the same per candidate.
WITH steps AS (
    SELECT trajectory_id, step, segment_index,
           count(*)                            AS candidates,
           count(*) FILTER (WHERE accepted)    AS accepted_candidates,
           count(*) FILTER (WHERE status = 'unparsable') AS unparsable
    FROM revisions
    WHERE run_id = $run_id AND kind = 'candidate'
    GROUP BY ALL
)
SELECT segment_index,
       count(*)                                         AS steps,
       count(*) FILTER (WHERE accepted_candidates > 0)  AS accepted_steps,
       sum(candidates)::BIGINT                          AS candidates,
       sum(unparsable)::BIGINT                          AS unparsable,
       count(*) FILTER (WHERE accepted_candidates > 0) / count(*) AS acceptance_rate
FROM steps
GROUP BY segment_index
ORDER BY segment_index;
