-- User snapshot sync (issue 7): what PostgreSQL knows about a user reaches MongoDB's
-- user_snapshots and the snapshots embedded in tasks (ops/sync.py).
--
-- * users.updated_at moves whenever a field a snapshot holds changes (name, email, avatar_url,
--   department, position, active), unless the statement sets updated_at itself. The worker's
--   watermark is (updated_at, id), so a change nobody stamped would otherwise be missed by a
--   catch-up. clock_timestamp(), not now(): two updates in one long transaction get distinct
--   stamps in the order they were made.
-- * user_deletions keeps a tombstone per deleted user, so a worker that was down when the row
--   disappeared still learns of it (a missing row has no updated_at to find). A user inserted
--   again with the same id removes its tombstone.
-- * NOTIFY user_snapshot_changes, payload {"id": ..., "op": "insert"|"update"|"delete"}, per
--   changed row, from statement-level triggers with transition tables (a trigger with a column
--   list cannot have them, so the update trigger compares old and new rows itself). A statement
--   touching more than 100 users sends one {"op": "bulk"} instead: the listener then catches up
--   by watermark, and a 100,000-row COPY does not queue 100,000 notifications.

CREATE TABLE user_deletions (
  user_id    UUID PRIMARY KEY,
  deleted_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX idx_user_deletions_deleted_at ON user_deletions (deleted_at, user_id);
CREATE INDEX idx_users_updated_at_id ON users (updated_at, id);

CREATE FUNCTION users_stamp_snapshot_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.name, NEW.email, NEW.avatar_url, NEW.department, NEW.position, NEW.active)
       IS DISTINCT FROM
     (OLD.name, OLD.email, OLD.avatar_url, OLD.department, OLD.position, OLD.active)
     AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
    NEW.updated_at := clock_timestamp();
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER users_stamp_snapshot_change
  BEFORE UPDATE ON users
  FOR EACH ROW EXECUTE FUNCTION users_stamp_snapshot_change();

CREATE FUNCTION users_notify_snapshot_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed UUID[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(n.id) INTO changed FROM new_rows n;
    DELETE FROM user_deletions d WHERE d.user_id = ANY(changed);
  ELSIF TG_OP = 'UPDATE' THEN
    SELECT array_agg(n.id) INTO changed
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE (n.name, n.email, n.avatar_url, n.department, n.position, n.active)
          IS DISTINCT FROM (o.name, o.email, o.avatar_url, o.department, o.position, o.active);
  ELSE
    SELECT array_agg(o.id) INTO changed FROM old_rows o;
    INSERT INTO user_deletions (user_id)
    SELECT unnest(changed)
    ON CONFLICT (user_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at;
  END IF;
  IF changed IS NULL THEN
    RETURN NULL;
  END IF;
  IF cardinality(changed) > 100 THEN
    PERFORM pg_notify('user_snapshot_changes', json_build_object('op', 'bulk')::text);
  ELSE
    PERFORM pg_notify(
      'user_snapshot_changes',
      json_build_object('id', id::text, 'op', lower(TG_OP))::text
    )
    FROM unnest(changed) AS id;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER users_notify_insert
  AFTER INSERT ON users REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION users_notify_snapshot_change();
CREATE TRIGGER users_notify_update
  AFTER UPDATE ON users REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION users_notify_snapshot_change();
CREATE TRIGGER users_notify_delete
  AFTER DELETE ON users REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION users_notify_snapshot_change();
