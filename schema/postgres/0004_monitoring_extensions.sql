-- pg_stat_statements feeds the monitor's slow-statement panel. Creating it needs a superuser
-- (or a database owner where it is allow-listed) and the library in shared_preload_libraries;
-- where either is missing the migration goes on and the monitor shows a plain hint instead.
DO $$
BEGIN
  CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported OR object_not_in_prerequisite_state THEN
  RAISE NOTICE 'pg_stat_statements not installed: %', SQLERRM;
END $$;
