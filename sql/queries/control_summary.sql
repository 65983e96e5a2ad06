-- A run's controls in figures, one row per control: of its completed trajectories, how many have
-- the control, the mean (and spread) of z*'s gain over it, and how many gain at least $margin
-- (the search's accept_margin: float32's noise). A trajectory without the control counts in
-- `completed` only.
WITH done AS (
    SELECT t.trajectory_id
    FROM trajectories t JOIN outcomes o ON o.trajectory_id = t.trajectory_id
    WHERE t.run_id = $run_id AND o.status = 'completed'
), gains AS (
    SELECT d.trajectory_id, c.thinking_gain, c.specificity
    FROM done d
    LEFT JOIN trajectory_controls c ON c.trajectory_id = d.trajectory_id AND c.run_id = $run_id
), long AS (
    SELECT 'no_thinking' AS control, trajectory_id, thinking_gain AS gain FROM gains
    UNION ALL
    SELECT 'other_thinking' AS control, trajectory_id, specificity AS gain FROM gains
), kinds AS (  -- both rows even for a run with nothing completed
    SELECT unnest(['no_thinking', 'other_thinking']) AS control
)
SELECT k.control,
       count(l.trajectory_id)                         AS completed,
       count(l.gain)                                  AS n,
       avg(l.gain)                                    AS mean_gain,
       median(l.gain)                                 AS median_gain,
       min(l.gain)                                    AS min_gain,
       max(l.gain)                                    AS max_gain,
       count(*) FILTER (WHERE l.gain >= $margin)      AS beats,
       count(*) FILTER (WHERE l.gain >= $margin) / nullif(count(l.gain), 0) AS share
FROM kinds k
LEFT JOIN long l USING (control)
GROUP BY k.control
ORDER BY k.control;
