-- Up Migration

-- Appends that overlap, and readers that still never skip an event.
--
-- Before, append_push_events held one advisory lock until COMMIT, so ids committed in id order
-- but one batch at a time across every replica. Now the lock (the "draw lock") is held only while
-- a batch draws its ids, and readers stop at a horizon:
--
--   appender, under the draw lock: draws its ids (contiguous, from the table's sequence) and
--     announces its first id by taking a transaction-level shared advisory lock
--     (lock space, first id mod 2^32); then releases the draw lock and inserts and commits
--     while other batches do the same. The announcement lasts until its transaction ends,
--     and Postgres makes a commit visible before it releases the transaction's locks.
--   reader: push_events_horizon(), under the draw lock shared, reads the highest id drawn so far
--     (L) and the announced first ids of the batches still open (F). The horizon is
--     min(L, min(F) - 1). Only then, in a later statement (a newer snapshot), it reads rows
--     with id <= horizon.
--
-- Why a reader can never skip an event: take an id i <= horizon whose row is not in the
-- reader's snapshot. i <= L, so i was drawn before the reader held the draw lock, by a batch B
-- that announced itself in the same critical section. If B was still open then, its first id is
-- in F and i >= first id > horizon: a contradiction. So B had ended before the horizon was read,
-- before the reader's later snapshot: committed (then the row is visible) or rolled back (then
-- the row never exists). Every id at or below the horizon is final; a reader that advances its
-- cursor only over rows it read at or below a horizon passes nothing that may still appear.
-- The horizon never moves backwards (a batch that opens later draws ids above L).
--
-- Ids drawn by a batch that rolls back, or by an element whose key another batch stored at the
-- same moment, stay unused: holes that no reader waits for (they are below the horizon once
-- the batch has ended) and that the doorbell's prev_id accounts for.
--
-- The lock space is per schema (hashtext of the schema's name), so two deployments in one
-- database do not wait for each other; a hash collision only makes a reader more cautious.
CREATE FUNCTION push_events_lock_space() RETURNS integer
LANGUAGE sql STABLE AS $fn$ SELECT hashtext(current_schema() || '.push_events') $fn$;

CREATE FUNCTION push_events_horizon() RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
  space constant integer := push_events_lock_space();
  drawn bigint;
  oldest_open bigint;
BEGIN
  PERFORM pg_advisory_lock_shared(space # 1, 0);
  BEGIN
    drawn := COALESCE(pg_sequence_last_value(pg_get_serial_sequence('push_events', 'id')::regclass), 0);
    -- An announcement carries the low 32 bits of a first id drawn at most 2^32 ids before L.
    SELECT min(drawn - ((drawn - l.objid::bigint) & 4294967295)) INTO oldest_open
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.classid = space::oid
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database());
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM pg_advisory_unlock_shared(space # 1, 0);
    RAISE;
  END;
  PERFORM pg_advisory_unlock_shared(space # 1, 0);
  RETURN LEAST(drawn, oldest_open - 1);
END
$fn$;

-- The same contract as before: one row per input element (its id, whether its key was already
-- stored, and prev_id: the id just before the batch's first drawn id, which the doorbell uses to
-- detect gaps), but set-based: keys checked in one query, events in one INSERT, one project
-- upsert per project per batch.
CREATE OR REPLACE FUNCTION append_push_events(batch jsonb)
RETURNS TABLE (ord integer, event_id bigint, duplicate boolean, prev_id bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  space constant integer := push_events_lock_space();
  fresh integer[];  -- ords of the elements whose key is not stored yet, in order
  ids bigint[];     -- their ids, drawn in one go
  stored bigint[];  -- the ids actually inserted (a key stored meanwhile by another batch: not)
  touched bigint[]; -- their projects
  registry boolean; -- whether any of them is a registry event
  id_seq constant regclass := pg_get_serial_sequence('push_events', 'id')::regclass;
BEGIN
  -- Keys first: a conflicting INSERT would burn an id.
  SELECT COALESCE(array_agg(x.ord ORDER BY x.ord), '{}') INTO fresh
  FROM jsonb_to_recordset(batch) AS x(ord integer, idempotency_key text, idempotency_scope text)
  -- (A correlated subquery, so that each key is one index probe whatever the batch's size.)
  WHERE x.idempotency_key IS NULL OR (
    SELECT p.id FROM push_events p
    WHERE p.idempotency_scope = COALESCE(x.idempotency_scope, 'gitlab') AND p.idempotency_key = x.idempotency_key
    LIMIT 1) IS NULL;

  IF cardinality(fresh) > 0 THEN
    -- The draw lock is a session lock, released here and not at commit: every way out releases it.
    PERFORM pg_advisory_lock(space # 1, 0);
    BEGIN
      SELECT array_agg(v ORDER BY v) INTO ids
      FROM (SELECT nextval(id_seq) AS v
            FROM generate_series(1, cardinality(fresh))) AS drawn;
      PERFORM pg_advisory_xact_lock_shared(space, (ids[1] & 4294967295)::bit(32)::integer);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
      PERFORM pg_advisory_unlock(space # 1, 0);
      RAISE;
    END;
    PERFORM pg_advisory_unlock(space # 1, 0);

    WITH ins AS (
      INSERT INTO push_events (id, kind, source, project_id, project_path, visibility, default_branch, ref,
                               before_sha, after_sha, checkout_sha, sha, pipeline_id, repository, tag, digest,
                               user_username, idempotency_key, idempotency_scope, received_at)
      OVERRIDING SYSTEM VALUE
      SELECT a.id, x.kind, x.source, x.project_id, x.project_path, x.visibility, x.default_branch, x.ref,
             x.before_sha, x.after_sha, x.checkout_sha, x.sha, x.pipeline_id, x.repository, x.tag, x.digest,
             x.user_username, x.idempotency_key, COALESCE(x.idempotency_scope, 'gitlab'), x.received_at
      FROM jsonb_to_recordset(batch) AS x(
        ord integer, kind text, source text, project_id bigint, project_path text, visibility smallint,
        default_branch text, ref text, before_sha text, after_sha text, checkout_sha text, sha text,
        pipeline_id bigint, repository text, tag text, digest text, user_username text,
        idempotency_key text, idempotency_scope text, received_at timestamptz)
      JOIN unnest(fresh, ids) AS a(ord, id) ON a.ord = x.ord
      ORDER BY a.id
      ON CONFLICT (idempotency_scope, idempotency_key) DO NOTHING
      RETURNING id, project_id, source
    )
    SELECT COALESCE(array_agg(ins.id), '{}'), COALESCE(array_agg(DISTINCT ins.project_id), '{}'),
           COALESCE(bool_or(ins.source = 'registry'), false)
    INTO stored, touched, registry FROM ins;

    -- Projects, one row each, locked in id order (two overlapping batches never deadlock), and
    -- only moved forward: a batch that commits after a later one leaves the later one's fields.
    PERFORM 1 FROM projects p WHERE p.id = ANY (touched) ORDER BY p.id FOR UPDATE;
    -- (From the batch, not from the rows just inserted: no plan that may scan the log.)
    INSERT INTO projects AS p (id, path, visibility, default_branch, last_event_id, updated_at)
    SELECT DISTINCT ON (x.project_id) x.project_id, x.project_path, x.visibility, x.default_branch, a.id, now()
    FROM jsonb_to_recordset(batch) AS x(ord integer, source text, project_id bigint, project_path text,
                                        visibility smallint, default_branch text)
    JOIN unnest(fresh, ids) AS a(ord, id) ON a.ord = x.ord
    WHERE a.id = ANY (stored) AND x.source IS DISTINCT FROM 'registry'
    ORDER BY x.project_id, a.id DESC
    ON CONFLICT (id) DO UPDATE
      SET path = excluded.path, visibility = excluded.visibility, default_branch = excluded.default_branch,
          last_event_id = excluded.last_event_id, updated_at = excluded.updated_at
      WHERE p.last_event_id IS NULL OR p.last_event_id < excluded.last_event_id;
    -- A registry event's project fields were read from the project's row: they say nothing new.
    IF registry THEN
      UPDATE projects p SET last_event_id = r.last_id, updated_at = now()
      FROM (SELECT x.project_id, max(a.id) AS last_id
            FROM jsonb_to_recordset(batch) AS x(ord integer, source text, project_id bigint)
            JOIN unnest(fresh, ids) AS a(ord, id) ON a.ord = x.ord
            WHERE a.id = ANY (stored) AND x.source = 'registry' GROUP BY x.project_id) AS r
      WHERE p.id = r.project_id AND (p.last_event_id IS NULL OR p.last_event_id < r.last_id);
    END IF;
  END IF;

  -- A new statement, a new snapshot: a key another batch stored while this one inserted is seen.
  RETURN QUERY
  SELECT x.ord,
         COALESCE(a.id, (SELECT p.id FROM push_events p
                         WHERE p.idempotency_scope = COALESCE(x.idempotency_scope, 'gitlab')
                           AND p.idempotency_key = x.idempotency_key LIMIT 1)),
         a.id IS NULL, COALESCE(ids[1] - 1, 0::bigint)
  FROM jsonb_to_recordset(batch) AS x(ord integer, idempotency_key text, idempotency_scope text)
  LEFT JOIN unnest(fresh, ids) AS a(ord, id) ON a.ord = x.ord AND a.id = ANY (stored)
  ORDER BY x.ord;
END
$fn$;

-- Down Migration

DROP FUNCTION push_events_horizon();

CREATE OR REPLACE FUNCTION append_push_events(batch jsonb)
RETURNS TABLE (ord integer, event_id bigint, duplicate boolean, prev_id bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  ev record;
  new_id bigint;
  before_batch bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(4242424242);
  SELECT COALESCE(max(p.id), 0) INTO before_batch FROM push_events p;
  prev_id := before_batch;
  FOR ev IN
    SELECT x.ord, x.kind, x.source, x.project_id, x.project_path, x.visibility, x.default_branch, x.ref,
           x.before_sha, x.after_sha, x.checkout_sha, x.sha, x.pipeline_id, x.repository, x.tag, x.digest,
           x.user_username, x.idempotency_key, COALESCE(x.idempotency_scope, 'gitlab') AS idempotency_scope,
           x.received_at
    FROM jsonb_to_recordset(batch) AS x(
      ord integer, kind text, source text, project_id bigint, project_path text, visibility smallint,
      default_branch text, ref text, before_sha text, after_sha text, checkout_sha text, sha text,
      pipeline_id bigint, repository text, tag text, digest text, user_username text,
      idempotency_key text, idempotency_scope text, received_at timestamptz)
    ORDER BY x.ord
  LOOP
    IF ev.idempotency_key IS NOT NULL THEN
      SELECT p.id INTO new_id FROM push_events p
      WHERE p.idempotency_scope = ev.idempotency_scope AND p.idempotency_key = ev.idempotency_key;
      IF new_id IS NOT NULL THEN
        ord := ev.ord;
        event_id := new_id;
        duplicate := true;
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;

    INSERT INTO push_events (kind, source, project_id, project_path, visibility, default_branch, ref,
                             before_sha, after_sha, checkout_sha, sha, pipeline_id, repository, tag, digest,
                             user_username, idempotency_key, idempotency_scope, received_at)
    VALUES (ev.kind, ev.source, ev.project_id, ev.project_path, ev.visibility, ev.default_branch, ev.ref,
            ev.before_sha, ev.after_sha, ev.checkout_sha, ev.sha, ev.pipeline_id, ev.repository, ev.tag, ev.digest,
            ev.user_username, ev.idempotency_key, ev.idempotency_scope, ev.received_at)
    RETURNING id INTO new_id;

    IF ev.source IS NOT DISTINCT FROM 'registry' THEN
      UPDATE projects SET last_event_id = new_id, updated_at = now() WHERE id = ev.project_id;
    ELSE
      INSERT INTO projects AS p (id, path, visibility, default_branch, last_event_id, updated_at)
      VALUES (ev.project_id, ev.project_path, ev.visibility, ev.default_branch, new_id, now())
      ON CONFLICT (id) DO UPDATE
        SET path = excluded.path, visibility = excluded.visibility,
            default_branch = excluded.default_branch, last_event_id = excluded.last_event_id,
            updated_at = excluded.updated_at;
    END IF;

    ord := ev.ord;
    event_id := new_id;
    duplicate := false;
    RETURN NEXT;
  END LOOP;
END
$fn$;
DROP FUNCTION push_events_lock_space();
