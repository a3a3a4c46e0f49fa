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

-- ======================================================================= outreach

-- name: claim_touchpoints
-- One statement claims due rows: FOR UPDATE SKIP LOCKED lets several daemons claim from the
-- same table without blocking or double-claiming, and the lease marks the row as in flight.
-- Leads still waiting for their first enrichment hold their touch points back (no phone yet).
WITH claimed AS (
    UPDATE touch_points tp
    SET state = 'sending', claimed_by = $2, claimed_at = now(),
        lease_until = now() + make_interval(secs => $3), attempts = tp.attempts + 1,
        -- a staff message (ops, 0006) keeps the text its author wrote
        recipient = NULL, sender = NULL,
        body = CASE WHEN tp.kind = 'staff' THEN tp.body END, gated_at = NULL,
        reconcile_attempts = 0, updated_at = now()
    WHERE tp.id IN (
        SELECT t.id FROM touch_points t
        JOIN leads l ON l.tenant_id = t.tenant_id AND l.id = t.lead_id
        WHERE t.tenant_id = $1 AND t.state = 'scheduled' AND t.due_at <= now()
          AND l.enrichment_status <> 'pending'
          -- a paused lead's automated steps wait; a person's message does not (ops, 0006)
          AND (l.paused_at IS NULL OR t.kind = 'staff')
        ORDER BY t.due_at, t.id
        LIMIT $4
        FOR UPDATE OF t SKIP LOCKED
    )
    RETURNING tp.*
)
SELECT c.*, l.state AS lead_state, l.location_id, l.first_name, l.last_name, l.phone, l.email,
       l.vehicle, l.services, l.order_number, l.attached_to, l.created_at AS lead_created_at,
       cs.token_hash AS chat_token_hash, cs.unsubscribe_token  -- chat (0010): only the hash
FROM claimed c
JOIN leads l ON l.tenant_id = c.tenant_id AND l.id = c.lead_id
LEFT JOIN chat_sessions cs ON cs.tenant_id = c.tenant_id AND cs.lead_id = c.lead_id;

-- name: claim_stale_sending
-- Rows left `sending` by a daemon that died mid-send (lease expired). They are re-leased to us
-- for reconciliation, never blindly resent. prev_claimed_at is when the lost attempt began.
-- reconcile_attempts counts these claims (one lookup each), so a lookup that keeps failing
-- ends (give_up_unconfirmed) instead of leaving the row `sending` forever.
WITH old AS (
    SELECT id, claimed_at FROM touch_points
    WHERE tenant_id = $1 AND state = 'sending' AND lease_until < now()
    ORDER BY lease_until
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE touch_points tp
SET claimed_by = $2, lease_until = now() + make_interval(secs => $3),
    reconcile_attempts = tp.reconcile_attempts + 1, updated_at = now()
FROM old
WHERE tp.id = old.id
RETURNING tp.*, old.claimed_at AS prev_claimed_at;

-- name: extend_leases
-- Heartbeat for rows still in flight (rate-limited sends can outlast one lease).
UPDATE touch_points SET lease_until = now() + make_interval(secs => $3)
WHERE tenant_id = $1 AND claimed_by = $2 AND state = 'sending' AND id = ANY($4::bigint[]);

-- Every state change of a claimed row below is conditional on the row being in flight and
-- ours (`state = 'sending' AND claimed_by = <our instance id>`), and the caller checks the row
-- count: a sender or reconciler whose lease expired and was taken over, or whose row a STOP
-- cancelled, changes nothing (two reconcilers must never record or resend one send twice).

-- name: reschedule_touchpoint
UPDATE touch_points SET state = 'scheduled', due_at = $3, last_error = $4, claimed_by = NULL,
    lease_until = NULL, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'sending' AND claimed_by = $5;

-- name: defer_touchpoint
-- Back to `scheduled` without counting the claim as an attempt: waiting for quiet hours, a
-- frequency cap or opening hours (or a graceful shutdown) is not a failed send.
UPDATE touch_points SET state = 'scheduled', due_at = $3, last_error = $4, claimed_by = NULL,
    lease_until = NULL, attempts = GREATEST(attempts - 1, 0), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'sending' AND claimed_by = $5;

-- name: finish_touchpoint
-- Terminal outcomes without a send: failed, skipped, cancelled.
UPDATE touch_points SET state = $3, last_error = $4, lease_until = NULL, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'sending' AND claimed_by = $5;

-- name: touchpoint_state
-- What became of a row that a conditional change above did not match (for the outcome).
SELECT state, claimed_by FROM touch_points WHERE tenant_id = $1 AND id = $2;

-- name: give_up_unconfirmed
-- A send in doubt whose lookup at the provider failed too many times: `unknown` (it may have
-- gone out; it is never resent blindly), with the reason on the row ($4) and on the lead ($5).
WITH given_up AS (
    UPDATE touch_points SET state = 'unknown', last_error = $4, lease_until = NULL,
        updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND state = 'sending' AND claimed_by = $3
    RETURNING lead_id
), lead AS (
    UPDATE leads SET last_error = $5, updated_at = now()
    WHERE tenant_id = $1 AND id IN (SELECT lead_id FROM given_up)
)
SELECT count(*) AS n FROM given_up;

-- name: insert_attempt
INSERT INTO message_attempts (tenant_id, touch_point_id, lead_id, channel, provider, provider_id,
    http_status, error_code, error_message, latency_ms, outcome, dry_run)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12);

-- name: gate_touchpoint
-- The send gate, after every wait and immediately before the provider call, in one statement:
-- the facts the caller's rules need (opt-out; the lead's state and attachment; for SMS what
-- the frequency cap counts: SMS sent to the address in the last 24 h, plus those in flight or
-- in doubt, erring towards fewer messages) and, when they allow it, the mark: gated_at and
-- the recipient/sender/body stored for reconciliation, only while the row is ours ($7), in
-- flight, not yet gated, the address not opted out and the lead as the caller last saw it
-- ($8, unattached). The caller sends only when `passed`.
-- Why a STOP cannot slip past: `tp` locks the row (FOR UPDATE). A STOP's cancel_for_address
-- updates the same row in the STOP's transaction, so one waits for the other. Either the STOP
-- commits first (`tp` then reads the row as `cancelled`: no mark, no send; an opt-out committed
-- before this statement began is also read directly), or the mark commits first: the row is
-- in flight, the STOP leaves it, and its send is earlier than the STOP.
WITH tp AS (
    SELECT t.state, t.claimed_by, t.gated_at, l.state AS lead_state, l.attached_to
    FROM touch_points t JOIN leads l ON l.tenant_id = t.tenant_id AND l.id = t.lead_id
    WHERE t.tenant_id = $1 AND t.id = $4
    FOR UPDATE OF t
), optout AS (
    SELECT EXISTS (SELECT 1 FROM contact_optouts
                   WHERE tenant_id = $1 AND channel = $2 AND address = $3) AS opted_out
), marked AS (
    UPDATE touch_points t SET gated_at = now(), recipient = $3, sender = $5, body = $6,
        updated_at = now()
    FROM tp, optout
    WHERE t.tenant_id = $1 AND t.id = $4 AND t.state = 'sending' AND t.claimed_by = $7
      AND tp.state = 'sending' AND tp.claimed_by = $7 AND tp.gated_at IS NULL
      AND NOT optout.opted_out AND tp.lead_state = $8 AND tp.attached_to IS NULL
    RETURNING t.id
)
SELECT tp.state, tp.claimed_by, tp.lead_state, tp.attached_to, optout.opted_out,
       ARRAY(SELECT COALESCE(sent_at, claimed_at) FROM touch_points
             WHERE tenant_id = $1 AND $2 = 'sms' AND channel = 'sms' AND recipient = $3
               AND id <> $4
               AND ((state = 'sent' AND sent_at > now() - interval '24 hours')
                    OR (state IN ('sending', 'unknown')
                        AND claimed_at > now() - interval '24 hours'))
             ORDER BY 1) AS recent,
       EXISTS (SELECT 1 FROM marked) AS passed
FROM tp, optout;

-- name: record_sent
-- An accepted send (outcome $14: 'sent', or 'reconciled' when a lost send was found at the
-- provider) in one statement: the sent mark, the attempt, the transcript line, and on
-- the lead's first accepted send new -> contacted with its timeline row (leads.can_transition
-- allows new -> contacted; `WHERE state = 'new'` is that rule for this one transition). The
-- UPDATE takes the lead's row lock itself (no SELECT ... FOR UPDATE, which would conflict
-- with the KEY SHARE that the transcript's foreign key takes): of two sends of one lead
-- committing together, the second re-checks the state after the first and moves nothing.
-- Only while the row is ours ($15) and in flight: everything else hangs on `sent`, so a
-- reconciler that lost its lease records nothing (recorded = 0).
WITH sent AS (
    UPDATE touch_points SET state = 'sent', provider_id = $6, sent_at = now(), dry_run = $9,
        lease_until = NULL, last_error = NULL, updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND state = 'sending' AND claimed_by = $15
    RETURNING id, author
), attempt AS (
    INSERT INTO message_attempts (tenant_id, touch_point_id, lead_id, channel, provider,
        provider_id, http_status, latency_ms, outcome, dry_run)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $14, $9 FROM sent
), moved AS (
    UPDATE leads SET state = 'contacted', updated_at = now()
    WHERE tenant_id = $1 AND id = $3 AND state = 'new' AND EXISTS (SELECT 1 FROM sent)
    RETURNING id
), event AS (
    INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail)
    SELECT $1, id, 'new', 'contacted', $12, $13 FROM moved
), transcript AS (
    INSERT INTO chat_messages (tenant_id, lead_id, session_id, direction, channel, address, body,
                               provider_id, author)
    -- author: who wrote it, for a staff message (ops, 0006); NULL for an automated step
    SELECT $1, $3, cs.id, 'outbound', $4, $10, $11, $6, sent.author
    FROM sent LEFT JOIN chat_sessions cs ON cs.tenant_id = $1 AND cs.lead_id = $3
    ON CONFLICT (tenant_id, provider_id) WHERE provider_id IS NOT NULL DO NOTHING
)
SELECT (SELECT count(*) FROM sent) AS recorded, (SELECT count(*) FROM moved) AS moved;

-- name: opt_out
INSERT INTO contact_optouts (tenant_id, channel, address, reason) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, channel, address) DO NOTHING;

-- name: opt_in
DELETE FROM contact_optouts WHERE tenant_id = $1 AND channel = $2 AND address = $3;

-- name: cancel_for_address
-- Opt-out: every touch point of this channel for leads with this phone/e-mail that has not
-- passed its send gate: `scheduled` ones, and `sending` ones still waiting for a send slot
-- (gated_at IS NULL: their gate then reads them `cancelled`). Updating such a row takes its
-- row lock, which the gate takes too: see gate_touchpoint. A gated row is in flight (its gate
-- committed before this STOP did) and is recorded as what happens to it.
UPDATE touch_points tp SET state = 'cancelled', last_error = $4, lease_until = NULL,
    updated_at = now()
FROM leads l
WHERE tp.tenant_id = $1 AND l.tenant_id = $1 AND l.id = tp.lead_id
  AND (tp.state = 'scheduled' OR (tp.state = 'sending' AND tp.gated_at IS NULL))
  AND tp.channel = $2
  AND ((tp.channel = 'sms' AND l.phone = $3) OR (tp.channel = 'email' AND l.email = $3));

-- name: set_lead_error
UPDATE leads SET last_error = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2;

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

-- name: count_due_touchpoints
-- The gauges. Due: scheduled and due now; overdue: still scheduled $2 seconds after its due
-- time (waiting for quiet hours, a cap or a retry moves due_at forward, so only a loop that is
-- behind, or a lead stuck before enrichment, makes a row overdue); unconfirmed: sends in doubt
-- that reconciliation gave up on.
SELECT count(*) FILTER (WHERE state = 'scheduled' AND due_at <= now()) AS n,
       count(*) FILTER (WHERE state = 'scheduled'
                          AND due_at <= now() - make_interval(secs => $2)) AS overdue,
       count(*) FILTER (WHERE state = 'unknown') AS unconfirmed
FROM touch_points WHERE tenant_id = $1 AND state IN ('scheduled', 'unknown');
