-- Dynamic roles, the permission catalogue and memberships (seed: "Permission System").

CREATE TABLE roles (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  name            VARCHAR(255) NOT NULL,
  key             VARCHAR(100) NOT NULL,
  description     TEXT,
  system_role     BOOLEAN NOT NULL DEFAULT false,
  active          BOOLEAN NOT NULL DEFAULT true,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- Seed: UNIQUE(organization_id, key) plus idx_roles_organization(organization_id); the unique
  -- index serves organization lookups too, so it carries that name.
  CONSTRAINT idx_roles_organization UNIQUE (organization_id, key),
  CONSTRAINT roles_key_format CHECK (key ~ '^[a-z][a-z0-9_]{0,99}$')
);
CREATE INDEX idx_roles_system ON roles (system_role);

CREATE TABLE permissions (
  id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  name        VARCHAR(255) NOT NULL UNIQUE,
  resource    VARCHAR(100) NOT NULL,
  action      VARCHAR(100) NOT NULL,
  description TEXT,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT permissions_name_is_resource_action CHECK (name = resource || '.' || action)
);
CREATE UNIQUE INDEX idx_permissions_resource_action ON permissions (resource, action);

CREATE TABLE role_permissions (
  id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  role_id       UUID NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
  permission_id UUID NOT NULL REFERENCES permissions (id) ON DELETE CASCADE,
  granted       BOOLEAN NOT NULL DEFAULT true,
  created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT idx_role_permissions_role UNIQUE (role_id, permission_id)
);
CREATE INDEX idx_role_permissions_permission ON role_permissions (permission_id);

CREATE TABLE organization_memberships (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  role            VARCHAR(50) NOT NULL DEFAULT 'member',
  active          BOOLEAN NOT NULL DEFAULT true,
  joined_at       TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT idx_org_memberships_user UNIQUE (user_id, organization_id),
  -- A membership's role is a role key of the same organization (system or dynamic).
  CONSTRAINT organization_memberships_role_fk FOREIGN KEY (organization_id, role)
    REFERENCES roles (organization_id, key) ON UPDATE CASCADE
);
CREATE INDEX idx_org_memberships_org ON organization_memberships (organization_id);
CREATE INDEX idx_org_memberships_active ON organization_memberships (active);
CREATE INDEX idx_org_memberships_org_active ON organization_memberships (organization_id, active);

-- The catalogue: resource x action. Data, so a later migration can add to it.
INSERT INTO permissions (name, resource, action, description)
SELECT r || '.' || a, r, a, d
FROM (VALUES
  ('organizations', 'read',   'See the organization and its settings'),
  ('organizations', 'update', 'Edit name, plan and settings'),
  ('organizations', 'manage', 'Create, deactivate and reactivate organizations'),
  ('members',       'read',   'List members'),
  ('members',       'create', 'Add members'),
  ('members',       'update', 'Change a member''s role'),
  ('members',       'delete', 'Deactivate or remove members'),
  ('roles',         'read',   'List roles and their permissions'),
  ('roles',         'create', 'Create dynamic roles'),
  ('roles',         'update', 'Rename roles and change their permissions'),
  ('roles',         'delete', 'Deactivate dynamic roles'),
  ('tasks',         'read',   'See tasks and activity'),
  ('tasks',         'create', 'Create tasks'),
  ('tasks',         'update', 'Edit and move tasks, log time'),
  ('tasks',         'delete', 'Delete tasks'),
  ('tasks',         'assign', 'Assign tasks to members'),
  ('sprints',       'read',   'See sprints and burndown'),
  ('sprints',       'create', 'Create sprints'),
  ('sprints',       'update', 'Edit, start and complete sprints'),
  ('sprints',       'delete', 'Delete sprints'),
  ('monitoring',    'read',   'See database health and statistics'),
  ('monitoring',    'manage', 'Cancel queries, kill operations, change profiling'),
  ('backups',       'read',   'List and verify backups'),
  ('backups',       'create', 'Take backups'),
  ('backups',       'restore','Restore backups'),
  ('audit',         'read',   'Read the permission audit log')
) AS catalogue (r, a, d);

-- The system roles every organization gets, and what each is granted. A row of
-- system_role_grants is a permission-name pattern (LIKE) granted to that role.
CREATE TABLE system_role_templates (
  key         VARCHAR(100) PRIMARY KEY,
  name        VARCHAR(255) NOT NULL,
  description TEXT NOT NULL,
  rank        SMALLINT NOT NULL UNIQUE
);
CREATE TABLE system_role_grants (
  role_key     VARCHAR(100) NOT NULL REFERENCES system_role_templates (key) ON DELETE CASCADE,
  name_pattern VARCHAR(255) NOT NULL,
  PRIMARY KEY (role_key, name_pattern)
);
INSERT INTO system_role_templates (key, name, description, rank) VALUES
  ('owner',  'Owner',  'Everything, including organization lifecycle', 1),
  ('admin',  'Admin',  'Everything but organization lifecycle', 2),
  ('member', 'Member', 'Works on tasks and sprints', 3),
  ('viewer', 'Viewer', 'Reads everything a member reads, changes nothing', 4);
INSERT INTO system_role_grants (role_key, name_pattern) VALUES
  ('owner', '%'),
  ('admin', 'organizations.read'), ('admin', 'organizations.update'),
  ('admin', 'members.%'), ('admin', 'roles.%'), ('admin', 'tasks.%'), ('admin', 'sprints.%'),
  ('admin', 'monitoring.%'), ('admin', 'backups.%'), ('admin', 'audit.%'),
  ('member', 'organizations.read'), ('member', 'members.read'), ('member', 'roles.read'),
  ('member', 'tasks.%'), ('member', 'sprints.read'), ('member', 'sprints.create'),
  ('member', 'sprints.update'), ('member', 'monitoring.read'),
  ('viewer', 'organizations.read'), ('viewer', 'members.read'), ('viewer', 'roles.read'),
  ('viewer', 'tasks.read'), ('viewer', 'sprints.read');

-- Every permission row, granted or not, so the matrix toggles a row instead of inserting one.
CREATE FUNCTION create_system_roles() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO roles (organization_id, name, key, description, system_role)
  SELECT NEW.id, t.name, t.key, t.description, true FROM system_role_templates t;

  INSERT INTO role_permissions (role_id, permission_id, granted)
  SELECT r.id, p.id,
         EXISTS (SELECT 1 FROM system_role_grants g
                 WHERE g.role_key = r.key AND p.name LIKE g.name_pattern)
  FROM roles r CROSS JOIN permissions p
  WHERE r.organization_id = NEW.id;
  RETURN NEW;
END $$;

CREATE TRIGGER organizations_create_system_roles
  AFTER INSERT ON organizations
  FOR EACH ROW EXECUTE FUNCTION create_system_roles();
