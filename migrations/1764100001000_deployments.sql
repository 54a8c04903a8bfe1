-- Up Migration

-- Which agent got which event, and when first (src/deployments/deliveries.ts). delivered_count
-- on push_events stays: it counts frames (replays included), this counts agents.
-- No foreign key to push_events, here or in deployments: its check would lock the newest events'
-- rows, on the very pages the event log appends to; rows of events retention removed are pruned
-- by the deployment sweeper (src/deployments/sweeper.ts), and every read joins the event.
CREATE TABLE event_deliveries (
  event_id     bigint      NOT NULL,
  agent_id     uuid        NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  delivered_at timestamptz NOT NULL,
  PRIMARY KEY (event_id, agent_id)
);
CREATE INDEX event_deliveries_agent_idx ON event_deliveries (agent_id, delivered_at);

-- One event followed to one Kustomization or HelmRelease of one agent (src/deployments).
CREATE TABLE deployments (
  id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id         bigint      NOT NULL,
  agent_id         uuid        NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  kind             text        NOT NULL,
  namespace        text        NOT NULL,
  name             text        NOT NULL,
  -- The source it goes through, as 'Kind/namespace/name'.
  source_key       text        NOT NULL,
  -- 'git' (a GitRepository) or 'oci' (an OCIRepository: the commit comes from the artifact).
  source_type      text        NOT NULL CHECK (source_type IN ('git', 'oci')),
  -- Where the commit status goes: the project (numeric id or path) and the commit. NULL until
  -- known (OCI: when the source reports the artifact's origin); no status without them.
  status_project   text,
  commit_sha       text,
  -- The branch or tag name the status is for.
  status_ref       text,
  state            text        NOT NULL CHECK (state IN ('pending', 'fetched', 'applied', 'failed', 'superseded', 'timed_out')),
  state_at         timestamptz NOT NULL,
  -- The revision seen with the latest state (the source's at fetched, the workload's after).
  revision         text,
  -- The source's revision when it became fetched (OCI: what the workload must apply).
  fetched_revision text,
  -- Flux's Ready reason and message with the outcome.
  reason           text,
  message          text,
  created_at       timestamptz NOT NULL,
  -- Every state reached: [{"state","at"}].
  timeline         jsonb       NOT NULL,
  UNIQUE (event_id, agent_id, kind, namespace, name)
);
CREATE INDEX deployments_open_idx ON deployments (agent_id, kind, namespace, name) WHERE state IN ('pending', 'fetched', 'failed');
CREATE INDEX deployments_open_source_idx ON deployments (agent_id, source_key) WHERE state IN ('pending', 'fetched', 'failed');
CREATE INDEX deployments_due_idx ON deployments (created_at) WHERE state IN ('pending', 'fetched');

-- Down Migration

DROP TABLE deployments;
DROP TABLE event_deliveries;
