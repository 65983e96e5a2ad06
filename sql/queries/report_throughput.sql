-- A run's work over time, one row per minute since it started (minutes without work included):
-- revisions scored, tokens generated, and items finished (with their running total).
WITH start AS (SELECT started_at FROM runs WHERE run_id = $run_id),
work AS (
    SELECT floor(epoch(v.created_at - s.started_at) / 60)::INTEGER AS minute,
           count(*) FILTER (WHERE v.score IS NOT NULL) AS scored,
           coalesce(sum(v.generated_tokens), 0)::BIGINT AS generated_tokens
    FROM revisions v, start s
    WHERE v.run_id = $run_id
    GROUP BY ALL
),
finished AS (
    SELECT floor(epoch(o.created_at - s.started_at) / 60)::INTEGER AS minute, count(*) AS finished
    FROM outcomes o, start s
    WHERE o.run_id = $run_id
    GROUP BY ALL
),
minutes AS (
    SELECT unnest(range(0, greatest((SELECT max(minute) FROM work), (SELECT max(minute) FROM finished)) + 1)) AS minute
)
SELECT m.minute,
       coalesce(w.scored, 0)           AS scored,
       coalesce(w.generated_tokens, 0) AS generated_tokens,
       coalesce(f.finished, 0)         AS finished,
       sum(coalesce(f.finished, 0)) OVER (ORDER BY m.minute)::BIGINT AS finished_total
FROM minutes m
LEFT JOIN work w USING (minute)
LEFT JOIN finished f USING (minute)
ORDER BY m.minute;
