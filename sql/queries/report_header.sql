-- A run's header for its report: who ran it with what, its latest status, and the figures
-- the run recorded when it completed (wall time and throughput live only there).
SELECT r.run_id, r.flow_name, r.flow_run_id, r.generator_model, r.scorer_model, r.backend, r.dtype,
       r.prompt_version, r.code_version, r.config_hash, r.started_at, r.status, r.status_at,
       try_cast(r.detail ->> 'wall_seconds' AS DOUBLE)                AS wall_seconds,
       try_cast(r.detail ->> 'items_per_hour' AS DOUBLE)              AS items_per_hour,
       try_cast(r.detail ->> 'generated_tokens_per_second' AS DOUBLE) AS generated_tokens_per_second,
       try_cast(r.detail ->> 'scored_tokens_per_second' AS DOUBLE)    AS scored_tokens_per_second,
       try_cast(r.detail ->> 'skipped_done' AS INTEGER)               AS skipped_done,
       try_cast(r.detail ->> 'resumed' AS INTEGER)                    AS resumed,
       CAST(r.detail -> 'busy' AS VARCHAR)                            AS busy,
       CAST(r.detail -> 'in_flight' AS VARCHAR)                       AS in_flight
FROM run_overview r
WHERE r.run_id = $run_id;
