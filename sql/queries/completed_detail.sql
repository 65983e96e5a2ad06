-- What a run stored with its 'completed' status: its summary, as JSON (whatever status came after).
SELECT detail FROM run_events WHERE run_id = $run_id AND status = 'completed' ORDER BY created_at DESC LIMIT 1
