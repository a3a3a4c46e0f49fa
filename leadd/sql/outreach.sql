-- Named queries of the send loop (claiming, gating and recording touch points), run only by
-- leadd/store/outreach.py. Every query takes the tenant id as $1.
--
-- Two clocks, on purpose. Whether a touch point is due, and the trailing 24 hours the SMS cap
-- counts, are decided on the caller's clock (a `now` parameter: the runtime clock, which tests
-- pin and move). Leases (claimed_at, lease_until) and the times a send is recorded at stay on
-- the database's clock: a lease is compared between daemons, possibly on hosts whose clocks
-- differ, and the database is the one clock they all read; a test's pinned clock must not make
-- a live daemon's lease look expired, nor stamp a real send with an imagined time.

-- ======================================================================= claiming

-- name: claim_touchpoints
-- One statement claims due rows: FOR UPDATE SKIP LOCKED lets several daemons claim from the
-- same table without blocking or double-claiming, and the lease marks the row as in flight.
-- Due means due_at <= $5 (the caller's clock). Leads still waiting for their first enrichment
-- hold their touch points back (no phone yet). The lead's columns come along: the gate and
-- the templates read them.
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
        WHERE t.tenant_id = $1 AND t.state = 'scheduled' AND t.due_at <= $5
          AND l.enrichment_status <> 'pending'
          -- 'contact': the customer is known, the vehicle and services are still being
          -- fetched. Steps that show them ($6: 'sequence:step_index' keys) wait; the
          -- acknowledgement and a person's message do not (issue 11).
          AND NOT (l.enrichment_status = 'contact' AND t.kind <> 'staff'
                   AND t.sequence || ':' || t.step_index = ANY($6::text[]))
          -- a paused lead's automated steps wait; a person's message does not (ops, 0006)
          AND (l.paused_at IS NULL OR t.kind = 'staff')
        ORDER BY t.due_at, t.id
        LIMIT $4
        FOR UPDATE OF t SKIP LOCKED
    )
    RETURNING tp.*
)
SELECT c.*, NULL::timestamptz AS prev_claimed_at,
       l.state AS lead_state, l.location_id, l.first_name, l.last_name, l.phone, l.email,
       l.vehicle, l.services, l.order_number, l.attached_to, l.created_at AS lead_created_at,
       cs.token_hash AS chat_token_hash, cs.unsubscribe_token  -- chat (0010): only the hash
FROM claimed c
JOIN leads l ON l.tenant_id = c.tenant_id AND l.id = c.lead_id
LEFT JOIN chat_sessions cs ON cs.tenant_id = c.tenant_id AND cs.lead_id = c.lead_id;

-- name: claim_stale_sending
-- Rows left `sending` by a daemon that died mid-send (lease expired), or handed over after an
-- ambiguous answer (release_in_doubt). They are re-leased to us for reconciliation, never
-- blindly resent. prev_claimed_at is when the lost attempt began.
-- reconcile_attempts counts these claims (one lookup each), so a lookup that keeps failing
-- ends (give_up_unconfirmed) instead of leaving the row `sending` forever. The lease is
-- compared on the database's clock (see the top of this file). The lead's columns come along
-- as in claim_touchpoints, so both claims return the same shape.
WITH old AS (
    SELECT id, claimed_at FROM touch_points
    WHERE tenant_id = $1 AND state = 'sending' AND lease_until < now()
    ORDER BY lease_until
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), stale AS (
    UPDATE touch_points tp
    SET claimed_by = $2, lease_until = now() + make_interval(secs => $3),
        reconcile_attempts = tp.reconcile_attempts + 1, updated_at = now()
    FROM old
    WHERE tp.id = old.id
    RETURNING tp.*, old.claimed_at AS prev_claimed_at
)
SELECT s.*,
       l.state AS lead_state, l.location_id, l.first_name, l.last_name, l.phone, l.email,
       l.vehicle, l.services, l.order_number, l.attached_to, l.created_at AS lead_created_at,
       cs.token_hash AS chat_token_hash, cs.unsubscribe_token  -- chat (0010): only the hash
FROM stale s
JOIN leads l ON l.tenant_id = s.tenant_id AND l.id = s.lead_id
LEFT JOIN chat_sessions cs ON cs.tenant_id = s.tenant_id AND cs.lead_id = s.lead_id;

-- name: extend_leases
-- Heartbeat for rows still in flight (rate-limited sends can outlast one lease).
UPDATE touch_points SET lease_until = now() + make_interval(secs => $3)
WHERE tenant_id = $1 AND claimed_by = $2 AND state = 'sending' AND id = ANY($4::bigint[]);

-- name: release_in_doubt
-- A send that ended ambiguously (timeout, connection error, 5xx: Twilio may have taken it) is
-- handed to reconciliation at once rather than after a lease: still `sending`, owned by nobody
-- (no sender's heartbeat renews it, and the sender can change it no more), its lease ending in
-- $4 seconds (touchpoints.reconcile_delay: until Twilio's message list can be trusted to show
-- a message just created), when claim_stale_sending takes it like any expired lease. due_at
-- ($5) is when it may be resent if the lookup does not find it: the retry backoff it would
-- have waited as a plain retry. Only while the row is ours ($3) and in flight.
UPDATE touch_points SET claimed_by = NULL, lease_until = now() + make_interval(secs => $4),
    due_at = $5, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'sending' AND claimed_by = $3;

-- name: expedite_lookups
-- Twilio's message list answers again after lookups failed: the sends in doubt waiting for
-- their next lookup (handed over after a failed one: nobody's, reconcile_attempts > 0) may
-- be looked up now rather than at the end of a backoff that grew while the list was down.
-- That lookup is not counted towards the give-up (reconcile_attempts - 1; the claim adds it
-- back), so a list that answers only now and then cannot run a send into `unknown` sooner.
-- Sends handed over just now (reconcile_attempts 0) keep their reconcile_delay.
UPDATE touch_points SET lease_until = now(), reconcile_attempts = reconcile_attempts - 1,
    updated_at = now()
WHERE tenant_id = $1 AND state = 'sending' AND claimed_by IS NULL AND reconcile_attempts > 0
  AND lease_until > now();

-- ======================================================================= changing a claimed row

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
-- frequency cap or opening hours (or a graceful shutdown), or for a provider that said "slow
-- down" and took nothing (a throttle), is not a failed send.
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

-- name: set_lead_error
UPDATE leads SET last_error = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2;

-- ======================================================================= the send

-- name: gate_touchpoint
-- The send gate, after every wait and immediately before the provider call, in one statement:
-- the facts the caller's rules need (opt-out; the lead's state and attachment; for SMS what
-- the frequency cap counts: SMS sent to the address in the 24 h before $9, the caller's clock,
-- plus those in flight or in doubt, erring towards fewer messages) and, when they allow it,
-- the mark: gated_at and the recipient/sender/body stored for reconciliation, only while the
-- row is ours ($7), in flight, not yet gated, the address not opted out and the lead as the
-- caller last saw it ($8, unattached). The caller sends only when `passed`.
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
               AND ((state = 'sent' AND sent_at > $9::timestamptz - interval '24 hours')
                    OR (state IN ('sending', 'unknown')
                        AND claimed_at > $9::timestamptz - interval '24 hours'))
             ORDER BY 1) AS recent,
       EXISTS (SELECT 1 FROM marked) AS passed
FROM tp, optout;

-- name: record_sent
-- An accepted send (outcome $14: 'sent', or 'reconciled' when a lost send was found at the
-- provider) in one statement: the sent mark, the attempt, the transcript line, and on
-- the lead's first accepted send new -> contacted with its timeline row (lifecycle.can_transition
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

-- ======================================================================= gauges

-- name: count_due_touchpoints
-- The gauges, on the caller's clock ($2). Due: scheduled and due now; overdue: still
-- scheduled $3 seconds after its due time (waiting for quiet hours, a cap or a retry moves
-- due_at forward, so only a loop that is behind, or a lead stuck before enrichment, makes a
-- row overdue); unconfirmed: sends in doubt that reconciliation gave up on.
SELECT count(*) FILTER (WHERE state = 'scheduled' AND due_at <= $2) AS n,
       count(*) FILTER (WHERE state = 'scheduled'
                          AND due_at <= $2::timestamptz - make_interval(secs => $3)) AS overdue,
       count(*) FILTER (WHERE state = 'unknown') AS unconfirmed
FROM touch_points WHERE tenant_id = $1 AND state IN ('scheduled', 'unknown');
