-- Up Migration

-- One row per event and millisecond of writing, holding the agents it was written to, instead of
-- one row per event and agent (src/deployments/deliveries.ts). A push fanned out to 2,000 agents
-- wrote 2,000 rows and 4,000 index entries: about 8 ms of Postgres CPU, on the cores the fan-out
-- itself needs (bench/README.md, issue 16). Now it writes a dozen rows.
-- An agent may appear in several rows of an event (a replay, two connections): readers take the
-- earliest time. The list (16 bytes an agent) is kept out of line uncompressed: ids do not compress.
CREATE TABLE event_delivery_lists (
  event_id     bigint      NOT NULL,
  delivered_at timestamptz NOT NULL,
  agent_ids    uuid[]      NOT NULL
);
ALTER TABLE event_delivery_lists ALTER COLUMN agent_ids SET STORAGE EXTERNAL;
INSERT INTO event_delivery_lists (event_id, delivered_at, agent_ids)
  SELECT event_id, delivered_at, array_agg(agent_id ORDER BY agent_id) FROM event_deliveries GROUP BY event_id, delivered_at;
DROP TABLE event_deliveries;
ALTER TABLE event_delivery_lists RENAME TO event_deliveries;
CREATE INDEX event_deliveries_event_idx ON event_deliveries (event_id);

-- Down Migration

CREATE TABLE event_delivery_rows (
  event_id     bigint      NOT NULL,
  agent_id     uuid        NOT NULL,
  delivered_at timestamptz NOT NULL,
  PRIMARY KEY (event_id, agent_id)
);
INSERT INTO event_delivery_rows (event_id, agent_id, delivered_at)
  SELECT d.event_id, a.agent_id, min(d.delivered_at)
  FROM event_deliveries d CROSS JOIN LATERAL unnest(d.agent_ids) AS a(agent_id)
  GROUP BY d.event_id, a.agent_id;
DROP TABLE event_deliveries;
ALTER TABLE event_delivery_rows RENAME TO event_deliveries;
ALTER TABLE event_deliveries RENAME CONSTRAINT event_delivery_rows_pkey TO event_deliveries_pkey;
CREATE INDEX event_deliveries_agent_idx ON event_deliveries (agent_id, delivered_at);
