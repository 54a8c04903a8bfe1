-- Up Migration

-- The event log (the table keeps its historical name, push_events) now holds artifact events
-- beside pushes: one id sequence, one append, one replay for both.
--   kind 'push' | 'tag_push': ref, after_sha (and before_sha when GitLab said it; NULL = unknown)
--   kind 'artifact', source 'pipeline': ref, sha (the pipeline's commit), pipeline_id
--   kind 'artifact', source 'registry': repository, tag, digest (tag pushed to the container registry)
ALTER TABLE push_events DROP CONSTRAINT push_events_kind_check;
ALTER TABLE push_events
  ALTER COLUMN ref DROP NOT NULL,
  ALTER COLUMN before_sha DROP NOT NULL,
  ALTER COLUMN after_sha DROP NOT NULL,
  ADD COLUMN source      text,
  ADD COLUMN sha         text,
  ADD COLUMN pipeline_id bigint,
  ADD COLUMN repository  text,
  ADD COLUMN tag         text,
  ADD COLUMN digest      text,
  -- Where the idempotency key comes from, so that keys of different origins never collide:
  -- 'gitlab' (Idempotency-Key or webhook-id as sent, the format stored before this migration),
  -- 'gitlab_change' (one change of a repository_update: "<delivery key>#<index>"),
  -- 'registry' (a container registry event id).
  ADD COLUMN idempotency_scope text NOT NULL DEFAULT 'gitlab';

ALTER TABLE push_events ADD CONSTRAINT push_events_kind_check CHECK (
  CASE kind
    WHEN 'push' THEN source IS NULL AND ref IS NOT NULL AND after_sha IS NOT NULL
    WHEN 'tag_push' THEN source IS NULL AND ref IS NOT NULL AND after_sha IS NOT NULL
    WHEN 'artifact' THEN
      (source IS NOT DISTINCT FROM 'pipeline' AND ref IS NOT NULL AND sha IS NOT NULL AND pipeline_id IS NOT NULL)
      OR (source IS NOT DISTINCT FROM 'registry' AND repository IS NOT NULL AND tag IS NOT NULL)
    ELSE false
  END
);
ALTER TABLE push_events ADD CONSTRAINT push_events_scope_check
  CHECK (idempotency_scope IN ('gitlab', 'gitlab_change', 'registry'));

ALTER TABLE push_events DROP CONSTRAINT push_events_idempotency_key_key;
CREATE UNIQUE INDEX push_events_idempotency_key ON push_events (idempotency_scope, idempotency_key);

-- The same contract as before (one row per input element: its id, whether its key was already
-- stored, and the highest id before the batch), for every kind of event. Elements without
-- idempotency_scope are 'gitlab' ones, as every element was before.
CREATE OR REPLACE FUNCTION append_push_events(batch jsonb)
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
    -- Look the key up first: a conflicting INSERT would burn an id and leave a hole.
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
      -- A registry event's project fields were read from this very row: they say nothing new.
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

-- Down Migration

DELETE FROM push_events WHERE kind = 'artifact';
UPDATE push_events SET before_sha = '0000000000000000000000000000000000000000' WHERE before_sha IS NULL;
DELETE FROM push_events WHERE idempotency_scope <> 'gitlab'
  AND idempotency_key IN (SELECT idempotency_key FROM push_events WHERE idempotency_scope = 'gitlab');
DROP INDEX push_events_idempotency_key;
ALTER TABLE push_events DROP CONSTRAINT push_events_scope_check;
ALTER TABLE push_events DROP CONSTRAINT push_events_kind_check;
ALTER TABLE push_events
  DROP COLUMN source,
  DROP COLUMN sha,
  DROP COLUMN pipeline_id,
  DROP COLUMN repository,
  DROP COLUMN tag,
  DROP COLUMN digest,
  DROP COLUMN idempotency_scope,
  ALTER COLUMN ref SET NOT NULL,
  ALTER COLUMN before_sha SET NOT NULL,
  ALTER COLUMN after_sha SET NOT NULL,
  ADD CONSTRAINT push_events_kind_check CHECK (kind IN ('push', 'tag_push')),
  ADD CONSTRAINT push_events_idempotency_key_key UNIQUE (idempotency_key);

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
    SELECT * FROM jsonb_to_recordset(batch) AS x(
      ord integer, kind text, project_id bigint, project_path text, visibility smallint,
      default_branch text, ref text, before_sha text, after_sha text, checkout_sha text,
      user_username text, idempotency_key text, received_at timestamptz)
    ORDER BY x.ord
  LOOP
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
