-- reer's store: append-only tables. Nothing is updated in place; views derive
-- "current", "best" and "passed". Every row carries the run that wrote it.

CREATE SEQUENCE IF NOT EXISTS reject_seq;
CREATE SEQUENCE IF NOT EXISTS check_seq;
CREATE SEQUENCE IF NOT EXISTS export_seq;

-- One row per run: what ran, with which models and settings.
CREATE TABLE IF NOT EXISTS runs (
    run_id          VARCHAR PRIMARY KEY,
    flow_run_id     VARCHAR,          -- Prefect flow-run id
    flow_name       VARCHAR,
    config          JSON,             -- the search and backend settings
    config_hash     VARCHAR,
    generator_model VARCHAR,
    scorer_model    VARCHAR,
    backend         VARCHAR,          -- one name, or each role's when they differ
    dtype           VARCHAR,          -- the setting
    prompt_version  VARCHAR,
    code_version    VARCHAR,          -- reer version and git commit
    started_at      TIMESTAMPTZ DEFAULT current_timestamp,
    -- Per role, as loaded (NULL: the role's model was not loaded, or the run predates the columns).
    generator_backend     VARCHAR,
    scorer_backend        VARCHAR,
    generator_dtype       VARCHAR,    -- NULL on the served backend: the server chose it and does not say
    scorer_dtype          VARCHAR,
    generator_fingerprint VARCHAR,    -- the model's content (models/loading.model_fingerprint)
    scorer_fingerprint    VARCHAR
);
-- Stores written before per-role columns: add them; their old runs keep NULL.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS generator_backend VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS scorer_backend VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS generator_dtype VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS scorer_dtype VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS generator_fingerprint VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS scorer_fingerprint VARCHAR;

-- Status changes of a run (running, completed, failed, interrupted); the latest wins.
CREATE TABLE IF NOT EXISTS run_events (
    run_id  VARCHAR NOT NULL,
    status  VARCHAR NOT NULL,
    detail  JSON,                     -- summary figures at the end of a run
    created_at TIMESTAMPTZ DEFAULT current_timestamp
);

-- (query, reference) pairs, identified by a hash of their normalized text (a text that came
-- without a request: the hash of the text alone, so re-reading it finds it before any model work).
CREATE TABLE IF NOT EXISTS examples (
    example_id    VARCHAR PRIMARY KEY,
    query         VARCHAR NOT NULL,
    reference     VARCHAR NOT NULL,
    source        VARCHAR,            -- file the pair was first read from
    source_record VARCHAR,            -- line, key or row within that file
    category      VARCHAR,            -- a categories.category, or a source's own name kept as given
    language      VARCHAR,
    run_id        VARCHAR,            -- run that first stored it
    created_at    TIMESTAMPTZ DEFAULT current_timestamp,
    source_id            VARCHAR,     -- the record's own id in its source (an id field or a JSON key)
    query_synthesized    BOOLEAN DEFAULT false,  -- the query was written by the generator (reverse-engineered)
    query_prompt_version VARCHAR,     -- the prompt that wrote it
    category_given       VARCHAR,     -- the category as the source spelled it
    category_source      VARCHAR,     -- mapped (given, matched the taxonomy) | given (kept as is) | model
    category_confidence  DOUBLE,      -- model only: softmax share of the best label
    category_method      VARCHAR,     -- model only: prompt, labels and normalization version
    tokens               INTEGER      -- query + reference in the scorer's tokens
);
-- Files written before sourcing stored these: add them (new files already have them).
ALTER TABLE examples ADD COLUMN IF NOT EXISTS source_id VARCHAR;
ALTER TABLE examples ADD COLUMN IF NOT EXISTS query_synthesized BOOLEAN DEFAULT false;
ALTER TABLE examples ADD COLUMN IF NOT EXISTS query_prompt_version VARCHAR;
ALTER TABLE examples ADD COLUMN IF NOT EXISTS category_given VARCHAR;
ALTER TABLE examples ADD COLUMN IF NOT EXISTS category_source VARCHAR;
ALTER TABLE examples ADD COLUMN IF NOT EXISTS category_confidence DOUBLE;
ALTER TABLE examples ADD COLUMN IF NOT EXISTS category_method VARCHAR;
ALTER TABLE examples ADD COLUMN IF NOT EXISTS tokens INTEGER;

-- Every record a run read, and where it went: loaded (a new example), duplicate (the same
-- pair earlier in this run), known (already stored by an earlier run), over_limit (past
-- --limit, left for later), rejected (with its reason; the record's row in rejects says more).
CREATE TABLE IF NOT EXISTS source_records (
    run_id        VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    source_record VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,
    example_id    VARCHAR,
    reason        VARCHAR,
    created_at    TIMESTAMPTZ DEFAULT current_timestamp
);

-- One row per run that covers a trajectory. trajectory_id hashes (example, search config with
-- its seed, prompt version, both models' fingerprints): the same inputs and settings give the
-- same id, so a rerun of the same command finds the same trajectories. `start` says how this
-- run found it: new, resumed (steps stored by an earlier run), finished (an earlier run ended
-- it) or rejected (its reference cannot be scored: an outcome says why, and nothing is searched).
CREATE TABLE IF NOT EXISTS trajectories (
    trajectory_id   VARCHAR NOT NULL,
    run_id          VARCHAR NOT NULL,
    example_id      VARCHAR NOT NULL,
    config_hash     VARCHAR,
    prompt_version  VARCHAR,
    generator_model VARCHAR,          -- the names as given, for people
    scorer_model    VARCHAR,
    seed            UBIGINT,
    language        VARCHAR,
    start           VARCHAR,
    created_at      TIMESTAMPTZ DEFAULT current_timestamp,
    generator_fingerprint VARCHAR,    -- the models' content, for identity: two folders of one name differ here
    scorer_fingerprint    VARCHAR,
    PRIMARY KEY (trajectory_id, run_id)
);
-- Stores made by reer 0.1.0 lack the column.
ALTER TABLE trajectories ADD COLUMN IF NOT EXISTS start VARCHAR;
-- Stores made before fingerprints: their rows keep NULL, since nothing tells which weights a
-- name stood for then; no query matches NULL, so their examples are searched again under ids
-- that do name the weights.
ALTER TABLE trajectories ADD COLUMN IF NOT EXISTS generator_fingerprint VARCHAR;
ALTER TABLE trajectories ADD COLUMN IF NOT EXISTS scorer_fingerprint VARCHAR;

-- Every version of the thinking: the initial one, every candidate (scored or not), with
-- its parent (the best revision when it was proposed) and whether it was accepted.
CREATE TABLE IF NOT EXISTS revisions (
    revision_id      VARCHAR PRIMARY KEY,
    trajectory_id    VARCHAR NOT NULL,
    run_id           VARCHAR NOT NULL,
    parent_id        VARCHAR,
    kind             VARCHAR NOT NULL,   -- initial | candidate
    step             INTEGER NOT NULL,   -- 0 for the initial revision, s for segment s
    segment_index    INTEGER,            -- 0-based segment a candidate rewrites
    candidate_index  INTEGER,
    segment_text     VARCHAR,            -- the rewritten segment (raw output when unparsable)
    thinking         VARCHAR NOT NULL,   -- the whole thinking this revision stands for
    accepted         BOOLEAN NOT NULL,
    status           VARCHAR NOT NULL,   -- scored | rejected | unparsable | unchanged | context_overflow
    note             VARCHAR,            -- why it was rejected or skipped
    score            DOUBLE,             -- -mean(clip(logp, -2, 0)) over scored answer tokens
    verified_score   DOUBLE,             -- the same in float32 (the verifier), where acceptance needed it: NULL if not
    nll              DOUBLE,             -- unclipped mean negative log-likelihood
    ppl              DOUBLE,             -- exp(nll)
    scored_tokens    INTEGER,
    thinking_tokens  INTEGER,
    generated_tokens INTEGER,
    finish_reason    VARCHAR,            -- stop | eos | length
    prompt_version   VARCHAR,
    created_at       TIMESTAMPTZ DEFAULT current_timestamp
);

-- Stores made before verification lack it: their revisions keep NULL.
ALTER TABLE revisions ADD COLUMN IF NOT EXISTS verified_score DOUBLE;

-- How each trajectory ended: one outcome per trajectory, written by the run that ended it.
CREATE TABLE IF NOT EXISTS outcomes (
    trajectory_id     VARCHAR PRIMARY KEY,
    run_id            VARCHAR NOT NULL,
    status            VARCHAR NOT NULL,  -- completed | rejected
    reason            VARCHAR NOT NULL,  -- below_tau | pass_complete | converged | too_short | ...
    final_revision_id VARCHAR,
    initial_score     DOUBLE,
    final_score       DOUBLE,
    steps             INTEGER,
    accepted_edits    INTEGER,
    segments          INTEGER,
    created_at        TIMESTAMPTZ DEFAULT current_timestamp,
    note              VARCHAR,           -- why it ended, where no revision says it (context_overflow)
    initial_verified_score DOUBLE,       -- initial_score and final_score in float32 (NULL: not scored)
    final_verified_score   DOUBLE
);
-- Stores made before the note and the verified scores lack them.
ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS note VARCHAR;
ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS initial_verified_score DOUBLE;
ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS final_verified_score DOUBLE;

-- Every input record or item that was dropped, with its reason. Nothing vanishes.
CREATE TABLE IF NOT EXISTS rejects (
    reject_id     BIGINT PRIMARY KEY DEFAULT nextval('reject_seq'),
    run_id        VARCHAR,
    stage         VARCHAR NOT NULL,   -- sourcing | search | quality
    source        VARCHAR,
    source_record VARCHAR,
    example_id    VARCHAR,
    trajectory_id VARCHAR,
    reason        VARCHAR NOT NULL,   -- a short code, e.g. malformed_json
    detail        VARCHAR,            -- the one-line message shown to the user
    payload       VARCHAR,            -- the raw record, as read
    created_at    TIMESTAMPTZ DEFAULT current_timestamp
);

-- Quality check results: one row per (trajectory or example, check) and validation.
-- Output checks (suite 'trajectories') name a trajectory; input checks (suite 'examples')
-- name an example only. A run validated again gets a new validation_id; views read the latest.
CREATE TABLE IF NOT EXISTS checks (
    check_id      BIGINT PRIMARY KEY DEFAULT nextval('check_seq'),
    run_id        VARCHAR NOT NULL,
    trajectory_id VARCHAR,            -- NULL for an input check
    suite         VARCHAR NOT NULL,   -- examples | trajectories
    check_name    VARCHAR NOT NULL,
    passed        BOOLEAN NOT NULL,   -- as great-expectations decided
    observed      DOUBLE,             -- the metric (NULL: not applicable, passes)
    threshold     DOUBLE,             -- the bound it was held to (see detail for >= or <=)
    detail        VARCHAR,            -- what was measured, and why it failed
    created_at    TIMESTAMPTZ DEFAULT current_timestamp,
    example_id    VARCHAR,
    validation_id VARCHAR
);
-- Files written before input checks existed: add their columns, allow rows without a trajectory.
ALTER TABLE checks ADD COLUMN IF NOT EXISTS example_id VARCHAR;
ALTER TABLE checks ADD COLUMN IF NOT EXISTS validation_id VARCHAR;
ALTER TABLE checks ALTER COLUMN trajectory_id DROP NOT NULL;

-- One row per validation of a run: the thresholds it held the run to and what it checked.
-- The latest validation of a run is the one the views (latest_checks, ...) read.
CREATE TABLE IF NOT EXISTS validations (
    validation_id VARCHAR PRIMARY KEY,
    run_id        VARCHAR NOT NULL,
    config        JSON,               -- the quality settings (thresholds)
    examples      INTEGER,            -- examples checked
    trajectories  INTEGER,            -- completed trajectories checked
    data_docs     VARCHAR,            -- the Data Docs index, when written
    created_at    TIMESTAMPTZ DEFAULT current_timestamp
);

-- Every exported row: the last link of the lineage. (run_id, format, path, row_index,
-- revision_id) is a row's key: tasks/export.py inserts, in the export's transaction, only the
-- rows not held yet, so exporting a run again adds none (a check, not an index: stores made
-- before it open unchanged, their earlier duplicate rows included).
CREATE TABLE IF NOT EXISTS exports (
    export_id     BIGINT PRIMARY KEY DEFAULT nextval('export_seq'),
    run_id        VARCHAR NOT NULL,
    trajectory_id VARCHAR NOT NULL,
    revision_id   VARCHAR NOT NULL,
    example_id    VARCHAR NOT NULL,
    format        VARCHAR NOT NULL,   -- parquet | jsonl | table
    path          VARCHAR NOT NULL,
    row_index     INTEGER NOT NULL,
    created_at    TIMESTAMPTZ DEFAULT current_timestamp
);

-- Controls of a run's completed trajectories, scored by the verifier (the scorer's model in
-- float32): the answer after no thinking, and after another item's final thinking (sorted by
-- trajectory_id, each trajectory reads the next one's, wrapping: a run with one completed
-- trajectory has no such control). Where the outcome lacks float32 scores, z(0) and z* are
-- scored again in the same call (kinds initial, final), so every gain compares float32 with
-- float32. Computing a run's controls again replaces its rows (tasks/controls.py).
CREATE TABLE IF NOT EXISTS controls (
    run_id              VARCHAR NOT NULL,
    trajectory_id       VARCHAR NOT NULL,
    kind                VARCHAR NOT NULL,  -- no_thinking | other_thinking | initial | final
    donor_trajectory_id VARCHAR,           -- other_thinking: the trajectory whose final thinking was read
    score               DOUBLE,            -- as revisions.score, NULL when the sequence did not fit (see note)
    nll                 DOUBLE,
    scored_tokens       INTEGER,
    dtype               VARCHAR,           -- the verifier's (NULL: a served model, whose server does not say)
    scorer_fingerprint  VARCHAR,           -- the verifier's model content: the run's scorer's
    note                VARCHAR,           -- why a control has no score
    created_at          TIMESTAMPTZ DEFAULT current_timestamp,
    PRIMARY KEY (run_id, trajectory_id, kind)
);
