-- Users, organizations and memberships (seed: "User Management").
--
-- Differences from the seed, on purpose:
-- * TIMESTAMP columns are TIMESTAMPTZ: every host and session reads the same instant.
-- * MySQL-style INDEX clauses inside CREATE TABLE become CREATE INDEX statements.
-- * Where the seed names a plain index on exactly the columns of a UNIQUE constraint (or a
--   leading prefix of it), the constraint itself carries the seed's index name, so the index
--   exists under that name without a second, redundant copy.
-- * users gets `active` (the seed's partial index idx_users_active_admin needs it) and the
--   snapshot fields that MongoDB's user_snapshots mirror (avatar_url, department, position).

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
  id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  email              VARCHAR(255) NOT NULL,
  encrypted_password VARCHAR(255) NOT NULL,
  name               VARCHAR(255),
  role               VARCHAR(50) NOT NULL DEFAULT 'user',
  provider           VARCHAR(50),
  uid                VARCHAR(255),
  active             BOOLEAN NOT NULL DEFAULT true,
  avatar_url         TEXT,
  department         VARCHAR(255),
  position           VARCHAR(255),
  created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT idx_users_email UNIQUE (email),
  CONSTRAINT users_email_lowercase CHECK (email = lower(email)),
  CONSTRAINT users_role_known CHECK (role IN ('user', 'admin'))
);
CREATE INDEX idx_users_provider_uid ON users (provider, uid);
CREATE INDEX idx_users_active_admin ON users (id) WHERE role = 'admin' AND active = true;
CREATE INDEX idx_users_name_trgm ON users USING gin (name gin_trgm_ops);

CREATE TABLE organizations (
  id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  name       VARCHAR(255) NOT NULL,
  subdomain  VARCHAR(63) NOT NULL,
  plan       VARCHAR(50) NOT NULL DEFAULT 'free',
  active     BOOLEAN NOT NULL DEFAULT true,
  settings   JSONB NOT NULL DEFAULT '{}'::jsonb,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT idx_organizations_subdomain UNIQUE (subdomain),
  -- A DNS label: lowercase letters, digits and hyphens, 1-63, no hyphen at either end.
  CONSTRAINT organizations_subdomain_dns_label
    CHECK (subdomain ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  CONSTRAINT organizations_settings_object CHECK (jsonb_typeof(settings) = 'object')
);
CREATE INDEX idx_organizations_active ON organizations (active);
CREATE INDEX idx_organizations_settings_gin ON organizations USING gin (settings);
CREATE INDEX idx_organizations_name_trgm ON organizations USING gin (name gin_trgm_ops);
