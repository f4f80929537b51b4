/**
 * The first schema. Table names are unqualified: the connection's search_path picks the
 * schema (tests give each test its own). Actor tables carry no foreign keys on purpose: one
 * bad row must not fail a whole batch of actor writes, and deployments are never hard-deleted
 * (a TERMINATED deployment stays queryable with its history).
 */
export const version = 1;
export const name = 'initial';

export const sql = `
CREATE TABLE deployments (
  id              text PRIMARY KEY,
  name            text NOT NULL,
  runtime_variant text NOT NULL,
  spec            jsonb NOT NULL,
  revision_id     text,
  target_replicas integer NOT NULL CHECK (target_replicas >= 0),
  state           text NOT NULL,
  reason          text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  deleted_at      timestamptz
);
-- A name is unique among live deployments only: a deleted one's name may be reused.
CREATE UNIQUE INDEX deployments_live_name_key ON deployments (name) WHERE deleted_at IS NULL;
-- getDeployment by name falls back to the latest deleted deployment of that name.
CREATE INDEX deployments_name_deleted_idx ON deployments (name, deleted_at DESC);

CREATE TABLE revisions (
  id            text PRIMARY KEY,
  deployment_id text NOT NULL REFERENCES deployments (id),
  number        integer NOT NULL,
  spec          jsonb NOT NULL,
  session       jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT revisions_deployment_number_key UNIQUE (deployment_id, number)
);

-- Projections of the replica and route actors, for queries that must not parse snapshots.
-- fillfactor leaves room for HOT updates: these rows change on every transition.
CREATE TABLE replicas (
  id            text PRIMARY KEY,
  deployment_id text NOT NULL,
  revision_id   text NOT NULL,
  state         text NOT NULL,
  endpoint      text,
  info          jsonb NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX replicas_deployment_idx ON replicas (deployment_id, id);

CREATE TABLE routes (
  id            text PRIMARY KEY,
  deployment_id text NOT NULL,
  replica_id    text NOT NULL,
  state         text NOT NULL,
  weight        double precision NOT NULL DEFAULT 1,
  last_health   jsonb,
  reason        text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX routes_deployment_idx ON routes (deployment_id, id);
CREATE INDEX routes_replica_idx ON routes (replica_id);

CREATE TABLE actor_snapshots (
  actor_id      text PRIMARY KEY,
  kind          text NOT NULL CHECK (kind IN ('deployment', 'replica', 'route')),
  parent_id     text,
  deployment_id text NOT NULL,
  state         text NOT NULL,
  snapshot      jsonb NOT NULL,
  version       bigint NOT NULL CHECK (version > 0),
  updated_at    timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX actor_snapshots_deployment_idx ON actor_snapshots (deployment_id, kind);

CREATE TABLE transitions (
  id            bigserial PRIMARY KEY,
  actor_id      text NOT NULL,
  kind          text NOT NULL,
  deployment_id text NOT NULL,
  from_state    text,
  to_state      text NOT NULL,
  event         text NOT NULL,
  reason        text,
  at            timestamptz NOT NULL
);
CREATE INDEX transitions_deployment_idx ON transitions (deployment_id, id);
CREATE INDEX transitions_actor_idx ON transitions (actor_id, id);

CREATE TABLE scaling_groups (
  name                          text PRIMARY KEY,
  route_cleanup_target_statuses jsonb NOT NULL DEFAULT '["unhealthy"]',
  settings                      jsonb NOT NULL DEFAULT '{}',
  updated_at                    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE endpoints (
  name       text PRIMARY KEY,
  backends   jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
`;
