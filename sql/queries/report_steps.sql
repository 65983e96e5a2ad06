-- Best score after each search step of every item a run covered (a resumed item's history
-- includes the steps earlier runs stored): the lines of the score-per-step plot.
SELECT h.trajectory_id, h.step, h.segment_index, h.candidates, h.accepted, h.best_score
FROM score_history h
WHERE h.trajectory_id IN (SELECT trajectory_id FROM trajectories WHERE run_id = $run_id)
  AND h.best_score IS NOT NULL
ORDER BY h.trajectory_id, h.step;
