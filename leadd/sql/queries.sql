-- Named runtime queries shared by the store's parts (leadd/store/), loaded once by
-- leadd/store/core.py with every other sql/*.sql file. Tenant-scoped queries take tenant_id as $1.

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

-- ======================================================================= leads
-- Shared by the areas that change a lead's state (intake's own queries: intake.sql).

-- name: lock_lead
SELECT id, state FROM leads WHERE tenant_id = $1 AND id = $2 FOR UPDATE;

-- name: set_lead_state
UPDATE leads SET state = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2;

-- name: cancel_lead_touchpoints
-- Like cancel_for_address: also the rows still waiting for their send slot (not yet gated).
UPDATE touch_points SET state = 'cancelled', last_error = $3, lease_until = NULL, updated_at = now()
WHERE tenant_id = $1 AND lead_id = $2
  AND (state = 'scheduled' OR (state = 'sending' AND gated_at IS NULL));

-- ======================================================================= opt-outs, conversations
-- (the send loop's own queries: outreach.sql)

-- name: opt_out
INSERT INTO contact_optouts (tenant_id, channel, address, reason) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, channel, address) DO NOTHING;

-- name: opt_in
DELETE FROM contact_optouts WHERE tenant_id = $1 AND channel = $2 AND address = $3;

-- name: cancel_for_address
-- Opt-out: every touch point of this channel for leads with this phone/e-mail that has not
-- passed its send gate: `scheduled` ones, and `sending` ones still waiting for a send slot
-- (gated_at IS NULL: their gate then reads them `cancelled`). Updating such a row takes its
-- row lock, which the gate takes too: see gate_touchpoint (outreach.sql). A gated row is in
-- flight (its gate committed before this STOP did) and is recorded as what happens to it.
UPDATE touch_points tp SET state = 'cancelled', last_error = $4, lease_until = NULL,
    updated_at = now()
FROM leads l
WHERE tp.tenant_id = $1 AND l.tenant_id = $1 AND l.id = tp.lead_id
  AND (tp.state = 'scheduled' OR (tp.state = 'sending' AND tp.gated_at IS NULL))
  AND tp.channel = $2
  AND ((tp.channel = 'sms' AND l.phone = $3) OR (tp.channel = 'email' AND l.email = $3));

-- name: insert_chat_message
INSERT INTO chat_messages (tenant_id, lead_id, session_id, direction, channel, address, body, provider_id)
SELECT $1, $2, cs.id, $3, $4, $5, $6, $7
FROM (SELECT 1) one LEFT JOIN chat_sessions cs ON cs.tenant_id = $1 AND cs.lead_id = $2
ON CONFLICT (tenant_id, provider_id) WHERE provider_id IS NOT NULL DO NOTHING
RETURNING id;

-- name: latest_lead_for_phone
-- The conversation an inbound SMS belongs to: the newest unattached lead of that phone,
-- preferring open ones.
SELECT id, state FROM leads
WHERE tenant_id = $1 AND phone = $2 AND attached_to IS NULL
ORDER BY (state IN ('completed', 'lost')), created_at DESC
LIMIT 1;

-- name: lead_by_unsubscribe_token
-- The unsubscribe link's own token: the chat token (sent in SMS links) unsubscribes no one.
SELECT l.id, l.email FROM chat_sessions cs JOIN leads l ON l.tenant_id = cs.tenant_id AND l.id = cs.lead_id
WHERE cs.tenant_id = $1 AND cs.unsubscribe_token = $2;

-- name: upsert_message_status
-- Callbacks arrive late, twice or out of order: a status never moves backwards in rank.
INSERT INTO message_status (tenant_id, provider_id, status, rank, error_code)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, provider_id) DO UPDATE
    SET status = EXCLUDED.status, rank = EXCLUDED.rank, error_code = EXCLUDED.error_code,
        updated_at = now()
    WHERE message_status.rank < EXCLUDED.rank;

-- name: insert_email_event
INSERT INTO email_events (tenant_id, sg_event_id, event, email, lead_id, touch_point_id, sg_message_id, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (tenant_id, sg_event_id) DO NOTHING
RETURNING sg_event_id;

-- name: notify_wake
-- A wake-up for the other daemons on this database (issue 11): work for `lane` ($2:
-- enrichment or send) may be due now. On the live-updates channel (0010), whose page
-- listeners ignore it (no lead); $3 names the sender, which ignores its own. No personal data.
SELECT pg_notify('leadd_events',
                 json_build_object('tenant', $1::uuid, 'kind', 'wake', 'lane', $2::text,
                                   'from', $3::text)::text);
