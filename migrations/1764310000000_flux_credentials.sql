-- Up Migration

-- Deploy tokens made for Flux from an agent's flux_access (src/credentials). One row per token
-- made. The token itself is kept only until the agent has applied it, and only sealed
-- (AES-256-GCM under KASGATE_ENCRYPTION_KEY: 12-byte IV, 16-byte tag, ciphertext); it is NULL
-- from then on, so neither a listing nor a database dump ever holds it in clear.
-- No foreign key to agents: a deleted agent's tokens must still be revoked on GitLab afterwards.
CREATE TABLE flux_credentials (
  id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  agent_id        uuid        NOT NULL,
  -- The flux_access entry it serves: (target_kind, lower(target_path), secret_name) is its slot.
  target_kind     text        NOT NULL CHECK (target_kind IN ('project', 'group')),
  target_path     text        NOT NULL,
  role            text        NOT NULL CHECK (role IN ('read_repository', 'read_registry')),
  secret_name     text        NOT NULL,
  namespaces      text[]      NOT NULL,
  kind            text        NOT NULL CHECK (kind IN ('basic-auth', 'dockerconfigjson')),
  registry        text,
  -- GitLab's deploy token id and username (neither is a secret).
  gitlab_token_id bigint      NOT NULL,
  username        text        NOT NULL,
  sealed_token    bytea,
  state           text        NOT NULL DEFAULT 'created' CHECK (state IN ('created', 'sent', 'applied', 'failed', 'revoked')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  -- Two thirds of the lifetime: a new token is made from then on.
  rotate_at       timestamptz NOT NULL,
  sent_at         timestamptz,
  applied_at      timestamptz,
  -- Why it is to be revoked ('superseded' waits until a newer token of its slot is applied).
  revoke_reason   text,
  revoked_at      timestamptz,
  last_error      text,
  send_attempts   integer     NOT NULL DEFAULT 0,
  next_send_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flux_credentials_agent_idx ON flux_credentials (agent_id, created_at);
CREATE INDEX flux_credentials_unsent_idx ON flux_credentials (next_send_at) WHERE sealed_token IS NOT NULL AND revoked_at IS NULL;

-- Per agent: when its credentials are next looked at (made, rotated, revoked), claimed by one
-- replica at a time with a lease (FOR UPDATE SKIP LOCKED), retried with backoff when GitLab fails.
CREATE TABLE flux_credential_work (
  agent_id     uuid        PRIMARY KEY,
  next_run_at  timestamptz NOT NULL DEFAULT now(),
  attempts     integer     NOT NULL DEFAULT 0,
  leased_until timestamptz,
  leased_by    text,
  claimed_at   timestamptz,
  -- Asked for a look (flux_access changed, the agent answered) at: a run claimed before it runs again at once.
  wanted_at    timestamptz NOT NULL DEFAULT now(),
  last_error   text,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flux_credential_work_due_idx ON flux_credential_work (next_run_at);

-- Down Migration

DROP TABLE flux_credential_work;
DROP TABLE flux_credentials;
