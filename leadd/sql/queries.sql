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

-- ======================================================================= leads: intake

-- name: insert_lead
-- One round trip for a new order: the lead, its first timeline row and its touch points.
-- ON CONFLICT makes a redelivered or polled order a no-op; the caller then reads the
-- existing id (a concurrent insert of the same order may not be visible to this snapshot).
-- A signed webhook delivery ($19 digest, remembered until $20) is remembered in the same
-- statement, only when it created the lead: remembered if and only if stored.
WITH ins AS (
    INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, order_number, source,
                       order_version, order_updated_at, order_data, customer_id, vehicle_id,
                       enrich_after)
    VALUES ($2, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())
    ON CONFLICT (tenant_id, shopmonkey_order_id) DO NOTHING
    RETURNING id
), ev AS (
    INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail)
    SELECT $1, id, NULL, 'new', $12, $13 FROM ins
), tp AS (
    INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name, channel, due_at)
    SELECT $1, ins.id, $14, s.idx, s.name, s.channel, s.due
    FROM ins, unnest($15::int[], $16::text[], $17::text[], $18::timestamptz[]) AS s(idx, name, channel, due)
), seen AS (
    INSERT INTO webhook_deliveries (tenant_id, digest, expires_at)
    SELECT $1, $19::bytea, $20::timestamptz FROM ins WHERE $19::bytea IS NOT NULL
    ON CONFLICT (tenant_id, digest) DO NOTHING
)
SELECT id FROM ins;

-- name: remember_delivery
-- Inside the transaction that stores the delivery: true when it was not seen before (or its
-- memory has expired and is renewed), NULL for a replay of a delivery already stored.
INSERT INTO webhook_deliveries (tenant_id, digest, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, digest) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE webhook_deliveries.expires_at <= now()
RETURNING true;

-- name: prune_deliveries
-- A delivery whose signature has expired cannot be replayed; forget it.
DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND expires_at <= now();

-- name: record_rejected_order
-- An order refused at intake (invalid, or the database would not store it), kept for
-- operators: one row per (source, order), counting sightings (the poller's overlap and
-- Shopmonkey's retries see it again). `first` is true on the first sighting only.
INSERT INTO rejected_orders (tenant_id, source, order_ref, reason) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, source, order_ref) DO UPDATE
    SET reason = EXCLUDED.reason, seen = rejected_orders.seen + 1, last_seen = now()
RETURNING (xmax = 0) AS first;

-- name: lead_id_by_order
SELECT id FROM leads WHERE tenant_id = $1 AND shopmonkey_order_id = $2;

-- name: lock_lead_by_order
SELECT id, state, order_version, order_updated_at FROM leads
WHERE tenant_id = $1 AND shopmonkey_order_id = $2 FOR UPDATE;

-- name: update_lead_order
UPDATE leads SET order_data = $3, order_version = $4, order_updated_at = $5,
    customer_id = $6, vehicle_id = $7, updated_at = now(),
    -- A customer or vehicle linked later means there is something new to enrich: due now,
    -- with a fresh attempt and failure budget. 'pending' stays pending (its touch points wait
    -- for the first enrichment); only a finished (or given up) enrichment is reopened.
    enrichment_status = CASE WHEN (customer_id IS DISTINCT FROM $6 OR vehicle_id IS DISTINCT FROM $7)
                                  AND enrichment_status IN ('done', 'failed')
                             THEN 'partial' ELSE enrichment_status END,
    enrichment_attempts = CASE WHEN customer_id IS DISTINCT FROM $6 OR vehicle_id IS DISTINCT FROM $7
                               THEN 0 ELSE enrichment_attempts END,
    enrichment_failures = CASE WHEN customer_id IS DISTINCT FROM $6 OR vehicle_id IS DISTINCT FROM $7
                               THEN 0 ELSE enrichment_failures END,
    enrich_after = CASE WHEN customer_id IS DISTINCT FROM $6 OR vehicle_id IS DISTINCT FROM $7
                        THEN now() ELSE enrich_after END
WHERE tenant_id = $1 AND id = $2;

-- name: lock_lead
SELECT id, state FROM leads WHERE tenant_id = $1 AND id = $2 FOR UPDATE;

-- name: set_lead_state
UPDATE leads SET state = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2;

-- name: insert_lead_event
INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: cancel_lead_touchpoints
-- Like cancel_for_address: also the rows still waiting for their send slot (not yet gated).
UPDATE touch_points SET state = 'cancelled', last_error = $3, lease_until = NULL, updated_at = now()
WHERE tenant_id = $1 AND lead_id = $2
  AND (state = 'scheduled' OR (state = 'sending' AND gated_at IS NULL));

-- name: lead_by_id
SELECT * FROM leads WHERE tenant_id = $1 AND id = $2;

-- name: lead_events
SELECT from_state, to_state, cause, detail, at FROM lead_events
WHERE tenant_id = $1 AND lead_id = $2 ORDER BY id;

-- ======================================================================= leads: enrichment

-- name: claim_enrichment
-- Leased like touch points: two daemons never enrich the same lead at once, and a lead whose
-- enricher died is picked up again once enrich_after passes. 'failed' has used up its retries.
UPDATE leads SET enrich_after = now() + make_interval(secs => $3),
                 enrichment_attempts = enrichment_attempts + 1
WHERE id IN (
    SELECT id FROM leads
    WHERE tenant_id = $1 AND enrichment_status NOT IN ('done', 'failed') AND enrich_after <= now()
      AND enrichment_attempts < $4
    ORDER BY enrich_after
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: save_enrichment
-- What enrichment learned, in one statement with what must commit with it: the lead's chat
-- session (an unguessable chat-link token, and by column default an unsubscribe one; here rather than in
-- insert_lead to keep the webhook's transaction small) and, when $14, dedupe of people: the
-- oldest open, unattached lead of the same phone or e-mail within the window ($13 s) becomes
-- this lead's `attached_to`, and this lead's pending touch points are cancelled. Leaving
-- 'pending' releases the touch points, so a duplicate can never be texted in between.
WITH chat AS (
    INSERT INTO chat_sessions (id, tenant_id, lead_id, token)
    VALUES (gen_random_uuid(), $1, $2, $12)
    ON CONFLICT (tenant_id, lead_id) DO NOTHING
), other AS (
    SELECT id FROM leads
    WHERE $14 AND tenant_id = $1 AND id <> $2 AND attached_to IS NULL
      AND state NOT IN ('completed', 'lost')
      AND created_at >= now() - make_interval(secs => $13)
      -- only to an older lead: two leads of one person enriched at once must not attach to
      -- each other (both sequences cancelled, the person never answered)
      AND (created_at, id) < (SELECT created_at, id FROM leads WHERE tenant_id = $1 AND id = $2)
      AND ((phone IS NOT NULL AND phone = $5) OR (email IS NOT NULL AND email = $6))
    ORDER BY created_at
    LIMIT 1
), saved AS (
    UPDATE leads SET first_name = $3, last_name = $4, phone = $5, email = $6, vehicle = $7,
        services = $8, enrichment_status = $9, enrich_after = $10, last_error = $11,
        enrichment_failures = 0,
        attached_to = COALESCE(attached_to, (SELECT id FROM other)), updated_at = now()
    WHERE tenant_id = $1 AND id = $2
    RETURNING state
), cancelled AS (
    UPDATE touch_points SET state = 'cancelled',
        last_error = 'attached to an open lead of the same person', updated_at = now()
    WHERE tenant_id = $1 AND lead_id = $2 AND state = 'scheduled'
      AND EXISTS (SELECT 1 FROM other)
), event AS (
    INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail)
    SELECT $1, $2, saved.state, saved.state, 'dedupe.attached',
           jsonb_build_object('attached_to', other.id::text)
    FROM saved, other
)
SELECT (SELECT id FROM other) AS attached_to;

-- name: record_enrichment_failure
-- One failed enrichment attempt of one lead, recorded on it (never values: $7 is the reason
-- in words) and retried at $5. At $3 failures (or the last claim, $4) it is 'failed': given up,
-- shown on its timeline, and, when it never got a contact ($6: it was still 'pending'), its
-- scheduled touch points are cancelled rather than sent to nobody.
WITH f AS (
    UPDATE leads SET
        enrichment_failures = enrichment_failures + 1,
        enrichment_status = CASE WHEN enrichment_failures + 1 >= $3 OR enrichment_attempts >= $4
                                 THEN 'failed' ELSE enrichment_status END,
        enrich_after = $5,
        last_error = CASE WHEN enrichment_failures + 1 >= $3 OR enrichment_attempts >= $4
                          THEN 'enrichment failed: ' || $7::text
                          ELSE 'enrichment error (retrying): ' || $7::text END,
        updated_at = now()
    WHERE tenant_id = $1 AND id = $2
    RETURNING id, state, enrichment_status, enrichment_failures
), cancelled AS (
    UPDATE touch_points SET state = 'cancelled', last_error = 'enrichment failed',
        updated_at = now()
    WHERE tenant_id = $1 AND lead_id = $2 AND state = 'scheduled' AND $6
      AND EXISTS (SELECT 1 FROM f WHERE enrichment_status = 'failed')
), event AS (
    INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail)
    SELECT $1, id, state, state, 'enrichment.failed',
           jsonb_build_object('reason', $7::text, 'failures', enrichment_failures)
    FROM f WHERE enrichment_status = 'failed'
)
SELECT enrichment_status, enrichment_failures FROM f;

-- ======================================================================= poller

-- name: acquire_lease
-- One holder per (tenant, name): take a free or expired lease, or renew our own.
INSERT INTO leases (tenant_id, name, holder, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (tenant_id, name) DO UPDATE
    SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE leases.expires_at < now() OR leases.holder = EXCLUDED.holder
RETURNING holder;

-- name: get_cursor
SELECT position FROM cursors WHERE tenant_id = $1 AND name = $2;

-- name: set_cursor
INSERT INTO cursors (tenant_id, name, position) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, name) DO UPDATE SET position = GREATEST(cursors.position, EXCLUDED.position),
    updated_at = now();

-- name: start_job
INSERT INTO job_executions (tenant_id, job) VALUES ($1, $2) RETURNING id;

-- name: finish_job
UPDATE job_executions SET finished_at = now(), status = $3, counts = $4, error = $5
WHERE tenant_id = $1 AND id = $2;

-- ======================================================================= opt-outs, conversations
-- (the send loop's queries are in outreach.sql)

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
