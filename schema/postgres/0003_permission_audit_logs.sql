-- Permission audit log, partitioned by month on created_at (seed: "Partitioning Strategy").
--
-- Month bounds are UTC. ensure_audit_log_partitions() creates months ahead of need (migrate,
-- the app and the worker call it); the DEFAULT partition means a write never fails for want of a
-- partition, and ensure_audit_log_partition() moves any rows it caught into the new month before
-- attaching it.

CREATE TABLE permission_audit_logs (
  id              UUID NOT NULL DEFAULT gen_random_uuid(),
  organization_id UUID NOT NULL,
  user_id         UUID NOT NULL,
  action          VARCHAR(100) NOT NULL,
  resource_type   VARCHAR(100),
  resource_id     UUID,
  changes         JSONB,
  ip_address      INET,
  user_agent      TEXT,
  -- clock_timestamp, not now(): several changes in one transaction keep their order.
  created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (created_at, id)
) PARTITION BY RANGE (created_at);

-- Keyset paging per organization, newest first, and the actor and action filters.
CREATE INDEX idx_audit_logs_org_created ON permission_audit_logs (organization_id, created_at DESC, id DESC);
CREATE INDEX idx_audit_logs_org_user_created ON permission_audit_logs (organization_id, user_id, created_at DESC, id DESC);
CREATE INDEX idx_audit_logs_org_action_created ON permission_audit_logs (organization_id, action, created_at DESC, id DESC);

CREATE TABLE permission_audit_logs_default PARTITION OF permission_audit_logs DEFAULT;

CREATE FUNCTION ensure_audit_log_partition(month_start DATE) RETURNS TEXT
LANGUAGE plpgsql AS $$
DECLARE
  first_day DATE := date_trunc('month', month_start)::date;
  part_name TEXT := format('permission_audit_logs_%s', to_char(first_day, 'YYYY_MM'));
  lower_bound TIMESTAMPTZ := (first_day::timestamp AT TIME ZONE 'UTC');
  upper_bound TIMESTAMPTZ := ((first_day + INTERVAL '1 month')::timestamp AT TIME ZONE 'UTC');
BEGIN
  IF to_regclass(part_name) IS NOT NULL THEN
    RETURN part_name;
  END IF;
  -- Serialise concurrent creators of the same month.
  PERFORM pg_advisory_xact_lock(hashtext(part_name));
  IF to_regclass(part_name) IS NOT NULL THEN
    RETURN part_name;
  END IF;
  EXECUTE format('CREATE TABLE %I (LIKE permission_audit_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part_name);
  EXECUTE format(
    'WITH moved AS (DELETE FROM permission_audit_logs_default WHERE created_at >= $1 AND created_at < $2 RETURNING *) '
    'INSERT INTO %I SELECT * FROM moved', part_name)
    USING lower_bound, upper_bound;
  EXECUTE format('ALTER TABLE permission_audit_logs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                 part_name, lower_bound, upper_bound);
  RETURN part_name;
END $$;

-- This month and the next `months_ahead` months (UTC); returns the partitions' names.
CREATE FUNCTION ensure_audit_log_partitions(months_ahead INTEGER DEFAULT 2) RETURNS SETOF TEXT
LANGUAGE sql AS $$
  SELECT ensure_audit_log_partition((date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => m))::date)
  FROM generate_series(0, months_ahead) AS m
$$;

SELECT ensure_audit_log_partitions(2);
