-- What a run stored with its 'completed' status: its summary, as JSON.
SELECT detail FROM run_overview WHERE run_id = $run_id AND status = 'completed'
