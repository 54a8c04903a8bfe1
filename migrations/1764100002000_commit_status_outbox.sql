-- Up Migration

-- Commit statuses owed to GitLab (src/gitlab/commit-statuses). Written in the transaction that
-- moves a deployment, posted by whichever replica claims them (a lease), so a replica that dies
-- leaves nothing unposted. The key makes "at most one post per sha, name and state".
CREATE TABLE commit_status_outbox (
  id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  deployment_id   bigint      REFERENCES deployments (id) ON DELETE SET NULL,
  event_id        bigint,
  -- GitLab's :id: a numeric project id or a project path.
  project         text        NOT NULL,
  sha             text        NOT NULL,
  name            text        NOT NULL,
  state           text        NOT NULL CHECK (state IN ('running', 'success', 'failed', 'canceled')),
  ref             text,
  target_url      text,
  description     text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  attempts        integer     NOT NULL DEFAULT 0,
  leased_until    timestamptz,
  leased_by       text,
  posted_at       timestamptz,
  -- Refused for good (a 4xx other than 429), with GitLab's answer.
  gave_up_at      timestamptz,
  last_error      text,
  UNIQUE (sha, name, state)
);
CREATE INDEX commit_status_outbox_due_idx ON commit_status_outbox (next_attempt_at, id)
  WHERE posted_at IS NULL AND gave_up_at IS NULL;

-- Down Migration

DROP TABLE commit_status_outbox;
