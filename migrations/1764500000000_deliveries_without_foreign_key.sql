-- Up Migration

-- A push fanned out to 2,000 agents writes 2,000 delivery rows (src/deployments/deliveries.ts).
-- The foreign key to agents checked each of them with a trigger of its own: 6.5 of the 11 ms
-- that Postgres spent on such an INSERT here. Without it, a deleted agent's deliveries stay
-- until retention prunes their event (the deployment sweeper); every read of deliveries joins
-- agents, so they are never shown or counted, and a deleted agent's id never comes back.
ALTER TABLE event_deliveries DROP CONSTRAINT event_deliveries_agent_id_fkey;

-- Down Migration

DELETE FROM event_deliveries d WHERE NOT EXISTS (SELECT 1 FROM agents a WHERE a.id = d.agent_id);
ALTER TABLE event_deliveries ADD CONSTRAINT event_deliveries_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents (id) ON DELETE CASCADE;
