-- Up Migration

CREATE TABLE agents (
  id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  name           text        NOT NULL,
  config_project text        NOT NULL,
  config         jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX agents_name_key ON agents (name);

-- Agent tokens are stored only as sha256 hashes; the prefix is what an admin sees in listings.
CREATE TABLE agent_tokens (
  id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  agent_id     uuid        NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  token_hash   bytea       NOT NULL UNIQUE,
  token_prefix text        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at   timestamptz
);
CREATE INDEX agent_tokens_agent_idx ON agent_tokens (agent_id);

-- Admin grants: an exact project path, or a group path covering every project under it.
CREATE TABLE agent_grants (
  agent_id uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  kind     text NOT NULL CHECK (kind IN ('project', 'group')),
  path     text NOT NULL
);
CREATE UNIQUE INDEX agent_grants_key ON agent_grants (agent_id, kind, lower(path));

-- Projects as last seen in a webhook. visibility is GitLab's visibility_level (0, 10, 20), NULL when unknown.
CREATE TABLE projects (
  id             bigint      PRIMARY KEY,
  path           text        NOT NULL,
  visibility     smallint,
  default_branch text,
  last_event_id  bigint,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_path_idx ON projects (lower(path));

-- The push event log. Ids are assigned under an advisory lock inside the appending statement,
-- so they commit in id order: a reader that sees id N has seen every surviving id below N.
CREATE TABLE push_events (
  id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind            text        NOT NULL CHECK (kind IN ('push', 'tag_push')),
  project_id      bigint      NOT NULL,
  project_path    text        NOT NULL,
  visibility      smallint,
  default_branch  text,
  ref             text        NOT NULL,
  before_sha      text        NOT NULL,
  after_sha       text        NOT NULL,
  checkout_sha    text,
  user_username   text,
  idempotency_key text        UNIQUE,
  received_at     timestamptz NOT NULL DEFAULT now(),
  delivered_count integer     NOT NULL DEFAULT 0
);
CREATE INDEX push_events_project_idx ON push_events (lower(project_path), id);
CREATE INDEX push_events_received_at_idx ON push_events (received_at);

-- Highest event id removed by retention: a cursor below it may have missed events.
CREATE TABLE event_log_state (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  pruned_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO event_log_state DEFAULT VALUES;

-- Each agent's acknowledged position in the log (set by `ack` frames).
CREATE TABLE agent_cursors (
  agent_id   uuid        PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
  event_id   bigint      NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Appends a batch of push events in one statement (one round trip for a whole group commit).
-- Input: a JSON array of events, in arrival order, with unique non-null idempotency keys.
-- Output: one row per input element: its event id, whether the key was already stored, and
-- prev_id, the highest id in the log before this batch (the doorbell uses it to detect gaps).
CREATE FUNCTION append_push_events(batch jsonb)
RETURNS TABLE (ord integer, event_id bigint, duplicate boolean, prev_id bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  ev record;
  new_id bigint;
  before_batch bigint;
BEGIN
  -- Serialize appenders (across replicas) so ids commit in order; held until commit.
  PERFORM pg_advisory_xact_lock(4242424242);
  SELECT COALESCE(max(p.id), 0) INTO before_batch FROM push_events p;
  prev_id := before_batch;
  FOR ev IN
    SELECT * FROM jsonb_to_recordset(batch) AS x(
      ord integer, kind text, project_id bigint, project_path text, visibility smallint,
      default_branch text, ref text, before_sha text, after_sha text, checkout_sha text,
      user_username text, idempotency_key text, received_at timestamptz)
    ORDER BY x.ord
  LOOP
    -- Look the key up first: a conflicting INSERT would burn an id and leave a hole.
    IF ev.idempotency_key IS NOT NULL THEN
      SELECT p.id INTO new_id FROM push_events p WHERE p.idempotency_key = ev.idempotency_key;
      IF new_id IS NOT NULL THEN
        ord := ev.ord;
        event_id := new_id;
        duplicate := true;
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;

    INSERT INTO push_events (kind, project_id, project_path, visibility, default_branch, ref,
                             before_sha, after_sha, checkout_sha, user_username, idempotency_key, received_at)
    VALUES (ev.kind, ev.project_id, ev.project_path, ev.visibility, ev.default_branch, ev.ref,
            ev.before_sha, ev.after_sha, ev.checkout_sha, ev.user_username, ev.idempotency_key, ev.received_at)
    RETURNING id INTO new_id;

    INSERT INTO projects AS p (id, path, visibility, default_branch, last_event_id, updated_at)
    VALUES (ev.project_id, ev.project_path, ev.visibility, ev.default_branch, new_id, now())
    ON CONFLICT (id) DO UPDATE
      SET path = excluded.path, visibility = excluded.visibility,
          default_branch = excluded.default_branch, last_event_id = excluded.last_event_id,
          updated_at = excluded.updated_at;

    ord := ev.ord;
    event_id := new_id;
    duplicate := false;
    RETURN NEXT;
  END LOOP;
END
$fn$;

-- Down Migration

DROP FUNCTION append_push_events(jsonb);
DROP TABLE agent_cursors;
DROP TABLE event_log_state;
DROP TABLE push_events;
DROP TABLE projects;
DROP TABLE agent_grants;
DROP TABLE agent_tokens;
DROP TABLE agents;
