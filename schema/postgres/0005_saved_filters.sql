-- A user's own saved board filters, per organization (data/saved_filters.py). The built-in
-- filters everyone has live in code (task_filters.BUILT_IN_FILTERS), not here.
--
-- * `filter` holds TaskFilter.to_json(): an object of the fields that are set.
-- * Names are unique per user and organization whatever their case: saving under an existing
--   name (any case) replaces that filter (INSERT ... ON CONFLICT on the expression index).
-- * Deleting a user or an organization deletes their filters; idx_saved_filters_organization
--   lets an organization's delete find its rows (the user's side uses the unique index).

CREATE TABLE saved_filters (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  name            VARCHAR(100) NOT NULL,
  filter          JSONB NOT NULL DEFAULT '{}'::jsonb,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT saved_filters_name_not_blank CHECK (btrim(name) <> ''),
  CONSTRAINT saved_filters_filter_object CHECK (jsonb_typeof(filter) = 'object')
);
CREATE UNIQUE INDEX idx_saved_filters_user_org_name
  ON saved_filters (user_id, organization_id, lower(name));
CREATE INDEX idx_saved_filters_organization ON saved_filters (organization_id);
