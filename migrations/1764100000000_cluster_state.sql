-- Up Migration

-- Cluster state: what each agent connection last reported in `status` frames (src/cluster).
-- Objects are kept per connection, so two connections of one agent never erase each other's;
-- an agent's objects are the union over its connections, those of dead connections shown stale.
CREATE TABLE cluster_connections (
  connection_id   uuid        PRIMARY KEY,
  agent_id        uuid        NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  replica_id      text        NOT NULL,
  opened_at       timestamptz NOT NULL DEFAULT now(),
  closed_at       timestamptz,
  -- When the connection last completed a full set.
  full_at         timestamptz,
  -- The agent said it has more objects than it may report (`"truncated": true`).
  agent_truncated boolean     NOT NULL DEFAULT false,
  -- Objects the gateway refused from this connection: over KASGATE_MAX_STATUS_OBJECTS per agent.
  refused_objects integer     NOT NULL DEFAULT 0
);
CREATE INDEX cluster_connections_agent_idx ON cluster_connections (agent_id);

CREATE TABLE cluster_objects (
  agent_id      uuid        NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  connection_id uuid        NOT NULL REFERENCES cluster_connections (connection_id) ON DELETE CASCADE,
  kind          text        NOT NULL,
  namespace     text        NOT NULL,
  name          text        NOT NULL,
  -- The object as reported (ReportedObject of src/protocol/kasgate-v1.ts).
  object        jsonb       NOT NULL,
  -- Sources: the lower-cased GitLab project path the agent matched them to.
  project       text,
  -- Kustomizations and HelmReleases: their sourceRef as 'Kind/namespace/name'.
  source_key    text,
  reported_at   timestamptz NOT NULL,
  PRIMARY KEY (agent_id, kind, namespace, name, connection_id)
);
CREATE INDEX cluster_objects_connection_idx ON cluster_objects (connection_id);
CREATE INDEX cluster_objects_project_idx ON cluster_objects (agent_id, project) WHERE project IS NOT NULL;
CREATE INDEX cluster_objects_source_idx ON cluster_objects (agent_id, source_key) WHERE source_key IS NOT NULL;

-- Down Migration

DROP TABLE cluster_objects;
DROP TABLE cluster_connections;
