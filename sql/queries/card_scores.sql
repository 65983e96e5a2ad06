-- Score statistics of a run's completed trajectories and of those passing every check.
WITH rows AS (
    SELECT o.initial_score, o.final_score, o.initial_score - o.final_score AS score_drop,
           v.thinking_tokens::DOUBLE AS thinking_tokens, coalesce(d.passed, false) AS passed
    FROM trajectories t
    JOIN outcomes o ON o.trajectory_id = t.trajectory_id
    JOIN revisions v ON v.revision_id = o.final_revision_id
    LEFT JOIN trajectory_verdicts d ON d.trajectory_id = t.trajectory_id AND d.run_id = t.run_id
    WHERE t.run_id = $run_id AND o.status = 'completed'
), sets AS (
    SELECT 'passed' AS "set", * FROM rows WHERE passed
    UNION ALL
    SELECT 'completed' AS "set", * FROM rows
), long AS (
    UNPIVOT sets ON initial_score, final_score, score_drop, thinking_tokens INTO NAME figure VALUE value
)
SELECT "set", figure, count(value) AS n, avg(value) AS mean, median(value) AS median,
       min(value) AS min, max(value) AS max
FROM long
GROUP BY "set", figure
ORDER BY "set" DESC, list_position(['initial_score', 'final_score', 'score_drop', 'thinking_tokens'], figure);
