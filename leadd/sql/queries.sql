-- Named runtime queries, loaded once by leadd/db.py. Tenant-scoped queries take tenant_id as $1.

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version, checksum FROM schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3);

-- name: upsert_tenant
INSERT INTO tenants (id, name) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()
WHERE tenants.name IS DISTINCT FROM EXCLUDED.name;

-- name: deactivate_missing_locations
-- Locations removed from the YAML are kept (leads reference them) but marked inactive.
UPDATE locations SET active = false, updated_at = now()
WHERE tenant_id = $1 AND NOT (id = ANY($2::text[])) AND active;

-- name: upsert_location
INSERT INTO locations (tenant_id, id, name, shopmonkey_location_id, timezone, phone, address, active)
VALUES ($1, $2, $3, $4, $5, $6, $7, true)
ON CONFLICT (tenant_id, id) DO UPDATE SET
    name = EXCLUDED.name, shopmonkey_location_id = EXCLUDED.shopmonkey_location_id,
    timezone = EXCLUDED.timezone, phone = EXCLUDED.phone, address = EXCLUDED.address,
    active = true, updated_at = now();

-- name: delete_location_hours
DELETE FROM location_hours WHERE tenant_id = $1 AND location_id = $2;

-- name: insert_location_hours
INSERT INTO location_hours (tenant_id, location_id, weekday, shift, open_minute, close_minute)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: delete_location_services
DELETE FROM service_catalog WHERE tenant_id = $1 AND location_id = $2;

-- name: insert_service
INSERT INTO service_catalog (tenant_id, location_id, name, price_cents) VALUES ($1, $2, $3, $4);
