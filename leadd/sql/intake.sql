-- Named queries of intake (Shopmonkey orders, enrichment, the poller), run only by
-- leadd/store/intake.py. Every query takes the tenant id as $1. Times that decide due-ness
-- (enrich_after, lease and delivery expiry) come from the runtime clock as a parameter, so
-- tests move time through the clock.

-- ======================================================================= orders

-- name: insert_lead
-- One round trip for a new order: the lead, its first timeline row and its touch points.
-- ON CONFLICT makes a redelivered or polled order a no-op; the caller then reads the
-- existing id (a concurrent insert of the same order may not be visible to this snapshot).
-- A signed webhook delivery ($19 digest, remembered until $20) is remembered in the same
-- statement, only when it created the lead: remembered if and only if stored. Enrichment is
-- due at once ($21, now).
WITH ins AS (
    INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, order_number, source,
                       order_version, order_updated_at, order_data, customer_id, vehicle_id,
                       enrich_after)
    VALUES ($2, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $21)
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

-- name: insert_leads
-- insert_lead for many orders in one statement and one commit (group commit, issue 11:
-- concurrent webhooks share it). One row per order in the first arrays ($2..$17); the touch
-- points of all of them flattened in the last ones ($18..$22, keyed by lead id). Returns the
-- ids of the leads created: an order that already has a lead, or that appears twice in the
-- batch, creates nothing the second time (ON CONFLICT DO NOTHING), exactly as one at a time.
WITH input AS (
    SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::bigint[], $8::timestamptz[], $9::jsonb[], $10::text[], $11::text[],
                         $12::text[], $13::jsonb[], $14::text[], $15::timestamptz[],
                         $16::bytea[], $17::timestamptz[])
        AS i(id, location_id, order_id, order_number, source, order_version, order_updated_at,
             order_data, customer_id, vehicle_id, cause, detail, sequence, enrich_after,
             digest, digest_until)
), ins AS (
    INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, order_number, source,
                       order_version, order_updated_at, order_data, customer_id, vehicle_id,
                       enrich_after)
    SELECT id, $1, location_id, order_id, order_number, source, order_version,
           order_updated_at, order_data, customer_id, vehicle_id, enrich_after
    FROM input
    ON CONFLICT (tenant_id, shopmonkey_order_id) DO NOTHING
    RETURNING id
), ev AS (
    INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail)
    SELECT $1, ins.id, NULL, 'new', i.cause, i.detail FROM ins JOIN input i ON i.id = ins.id
), tp AS (
    INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name, channel, due_at)
    SELECT $1, t.lead_id, i.sequence, t.idx, t.name, t.channel, t.due
    FROM unnest($18::uuid[], $19::int[], $20::text[], $21::text[], $22::timestamptz[])
        AS t(lead_id, idx, name, channel, due)
    JOIN ins ON ins.id = t.lead_id JOIN input i ON i.id = t.lead_id
), seen AS (
    INSERT INTO webhook_deliveries (tenant_id, digest, expires_at)
    SELECT $1, i.digest, i.digest_until FROM ins JOIN input i ON i.id = ins.id
    WHERE i.digest IS NOT NULL
    ON CONFLICT (tenant_id, digest) DO NOTHING
)
SELECT id FROM ins;

-- name: remember_delivery
-- Inside the transaction that stores the delivery: true when it was not seen before (or its
-- memory has expired by $4, now, and is renewed), NULL for a replay of a delivery already
-- stored.
INSERT INTO webhook_deliveries (tenant_id, digest, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, digest) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE webhook_deliveries.expires_at <= $4::timestamptz
RETURNING true;

-- name: prune_deliveries
-- A delivery whose signature has expired ($2: now) cannot be replayed; forget it.
DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND expires_at <= $2;

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
    -- A customer or vehicle linked later means there is something new to enrich: due now
    -- ($8), with a fresh attempt and failure budget. 'pending' stays pending (its touch
    -- points wait for the first enrichment); a finished (or given up) enrichment is
    -- reopened. A lead with only its contact ('contact': the details stage never looks the
    -- customer up again) whose customer changed waits for the new one as a new lead does,
    -- so nothing more goes to the old contact.
    enrichment_status = CASE WHEN customer_id IS DISTINCT FROM $6 AND enrichment_status = 'contact'
                             THEN 'pending'
                             WHEN (customer_id IS DISTINCT FROM $6 OR vehicle_id IS DISTINCT FROM $7)
                                  AND enrichment_status IN ('done', 'failed')
                             THEN 'partial' ELSE enrichment_status END,
    enrichment_attempts = CASE WHEN customer_id IS DISTINCT FROM $6 OR vehicle_id IS DISTINCT FROM $7
                               THEN 0 ELSE enrichment_attempts END,
    enrichment_failures = CASE WHEN customer_id IS DISTINCT FROM $6 OR vehicle_id IS DISTINCT FROM $7
                               THEN 0 ELSE enrichment_failures END,
    enrich_after = CASE WHEN customer_id IS DISTINCT FROM $6 OR vehicle_id IS DISTINCT FROM $7
                        THEN $8 ELSE enrich_after END
WHERE tenant_id = $1 AND id = $2;

-- name: insert_lead_event
-- $7 actor: the person who caused it (0006), null for leadd and the customer.
INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- ======================================================================= enrichment

-- name: claim_enrichment
-- Leased like touch points: two daemons never enrich the same lead at once, and a lead whose
-- enricher died is picked up again once enrich_after passes ($5: now, from the runtime
-- clock). 'failed' has used up its retries. Leads still waiting for their customer
-- ('pending': no acknowledgement can go yet) come before details ('contact') and retries.
UPDATE leads SET enrich_after = $5::timestamptz + make_interval(secs => $3),
                 enrichment_attempts = enrichment_attempts + 1
WHERE id IN (
    SELECT id FROM leads
    WHERE tenant_id = $1 AND enrichment_status NOT IN ('done', 'failed') AND enrich_after <= $5
      AND enrichment_attempts < $4
    ORDER BY enrichment_status <> 'pending', enrich_after
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING id, location_id, shopmonkey_order_id, order_data, customer_id, vehicle_id,
          first_name, last_name, phone, email, vehicle, services, enrichment_status,
          enrichment_attempts, enrichment_failures, attached_to;

-- name: save_enrichment
-- What enrichment learned, in one statement with what must commit with it: the lead's chat
-- session (the hash of its chat-link token $12, the link expiring at $15 (chat, 0010), and by
-- column default an unsubscribe token; here
-- rather than in insert_lead to keep the webhook's transaction small) and, when $14, dedupe of people: the
-- oldest open, unattached lead of the same phone or e-mail within the window ($13 s) becomes
-- this lead's `attached_to`, and this lead's pending touch points are cancelled. Leaving
-- 'pending' releases the touch points, so a duplicate can never be texted in between.
WITH chat AS (
    INSERT INTO chat_sessions (id, tenant_id, lead_id, token_hash, expires_at)
    VALUES (gen_random_uuid(), $1, $2, $12, $15)
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
-- `due`: a touch point of this lead is due by $16 (the runtime clock's now): the send loop
-- has work (only then is it woken; a lead whose steps are all later costs it nothing).
SELECT (SELECT id FROM other) AS attached_to,
       EXISTS (SELECT 1 FROM touch_points
               WHERE tenant_id = $1 AND lead_id = $2 AND state = 'scheduled'
                 AND due_at <= $16::timestamptz) AS due;

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
-- One holder per (tenant, name): take a free or expired lease, or renew our own ($5: now).
INSERT INTO leases (tenant_id, name, holder, expires_at)
VALUES ($1, $2, $3, $5::timestamptz + make_interval(secs => $4))
ON CONFLICT (tenant_id, name) DO UPDATE
    SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE leases.expires_at < $5 OR leases.holder = EXCLUDED.holder
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
