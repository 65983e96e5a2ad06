-- Stored examples with no finished trajectory under one configuration: the search settings'
-- hash (the seed is one of them), the prompt version and both models' fingerprints (the parts
-- of a trajectory id besides the example). Fingerprints, not names: two folders called
-- checkpoint-500 are two models. A trajectory with any outcome is finished, completed or
-- rejected (by the search, or before it when its reference cannot be scored): the same inputs
-- and settings would only repeat it (prepare_searches skips it too), so a rejected one must not
-- come back every night and take the place of examples never searched.
SELECT x.*
FROM examples x
WHERE NOT EXISTS (
    SELECT 1
    FROM trajectories t
    JOIN outcomes o ON o.trajectory_id = t.trajectory_id
    WHERE t.example_id = x.example_id
      AND t.config_hash = $config_hash AND t.prompt_version = $prompt_version
      AND t.generator_fingerprint = $generator_fingerprint AND t.scorer_fingerprint = $scorer_fingerprint
)
ORDER BY x.created_at, x.source, length(x.source_record), x.source_record;
