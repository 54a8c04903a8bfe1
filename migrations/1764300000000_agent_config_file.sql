-- Up Migration

-- The agent's configuration file in its config project (src/agents/config-file). `config` stays
-- what the admin API set; `config_file` holds the keys of the last good file, which override it
-- key by key; `flux_access` the accepted flux_access of that file (rule 4 of the access rule, and
-- the deploy tokens). `config_next_read_at` is when some replica should read the file again
-- (claimed with FOR UPDATE SKIP LOCKED, so one replica reads it); NULL: never (no GitLab API).
ALTER TABLE agents
  ADD COLUMN config_file         jsonb,
  ADD COLUMN flux_access         jsonb,
  ADD COLUMN config_source       jsonb,
  ADD COLUMN config_error        text,
  ADD COLUMN config_read_at      timestamptz,
  ADD COLUMN config_next_read_at timestamptz;
CREATE INDEX agents_config_next_read_idx ON agents (config_next_read_at) WHERE config_next_read_at IS NOT NULL;
CREATE INDEX agents_config_project_idx ON agents (lower(config_project));

-- Down Migration

DROP INDEX agents_config_project_idx;
DROP INDEX agents_config_next_read_idx;
ALTER TABLE agents
  DROP COLUMN config_file,
  DROP COLUMN flux_access,
  DROP COLUMN config_source,
  DROP COLUMN config_error,
  DROP COLUMN config_read_at,
  DROP COLUMN config_next_read_at;
