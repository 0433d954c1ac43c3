-- What the batch snapshot sync last wrote to MongoDB, per user (issue 7, ops/sync.py).
--
-- A re-sync compares every user with this table inside PostgreSQL and fetches only the users
-- whose state differs, instead of reading all user_snapshots documents from MongoDB to learn
-- their hashes (3-4 s for 100,000 users on SecantusDB).
--
-- * state_hash: md5 of the snapshot's content hash and the user's organizations, as the sync
--   computes it (ops/sync.py USER_SELECT), or 'deleted' once the snapshot is marked deleted.
-- * A row is written only after MongoDB acknowledged the snapshot (and its tasks) with that
--   state: a row may be older than MongoDB (an extra, idempotent rewrite next time), never
--   newer. Drift made directly in MongoDB is the consistency check's to find (sync --check,
--   --repair, which re-reads every snapshot).
-- * epoch ties the rows to one MongoDB database: the sync stores the same value in MongoDB's
--   sync_state and starts over (one full read) when the two differ, e.g. after pointing the
--   application at another or an emptied MongoDB.
-- * No foreign key: a deleted user's row stays, saying their snapshot was marked deleted.

CREATE TABLE user_snapshot_digests (
  user_id    UUID PRIMARY KEY,
  state_hash TEXT NOT NULL,
  written_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE user_snapshot_digest_epoch (
  id    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
  epoch TEXT NOT NULL
);
