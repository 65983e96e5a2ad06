-- Stored examples with no completed trajectory under one configuration: the search settings'
-- hash, the prompt version and both models (the parts of a trajectory id besides the example).
SELECT x.*
FROM examples x
WHERE NOT EXISTS (
    SELECT 1
    FROM trajectories t
    JOIN outcomes o ON o.trajectory_id = t.trajectory_id
    WHERE t.example_id = x.example_id AND o.status = 'completed'
      AND t.config_hash = $config_hash AND t.prompt_version = $prompt_version
      AND t.generator_model = $generator_model AND t.scorer_model = $scorer_model
)
ORDER BY x.created_at, x.source, length(x.source_record), x.source_record;
