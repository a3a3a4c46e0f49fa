-- Queries of the chat page and the staff inbox, loaded once by leadd/store/sqlbase.py. Every
-- query takes tenant_id as $1. Times that decide something (expiry, rate limits, what is due)
-- come from the caller's clock as a parameter.

-- ======================================================================= the chat page

-- name: chat_session
-- The chat page's lookup by token hash ($2), with what the page shows: first name only.
SELECT cs.lead_id, cs.expires_at, cs.seen_at, l.location_id, l.first_name, l.vehicle,
       l.services, l.state, l.order_number
FROM chat_sessions cs
JOIN leads l ON l.tenant_id = cs.tenant_id AND l.id = cs.lead_id
WHERE cs.tenant_id = $1 AND cs.token_hash = $2;

-- name: touch_seen
UPDATE chat_sessions SET seen_at = GREATEST(seen_at, $3) WHERE tenant_id = $1 AND lead_id = $2;

-- name: page_closed
-- The page's live stream ended: it counts as open only until $3 (a reload reconnects first).
UPDATE chat_sessions SET seen_at = LEAST(seen_at, $3) WHERE tenant_id = $1 AND lead_id = $2;

-- name: page_seen_at
SELECT seen_at FROM chat_sessions WHERE tenant_id = $1 AND lead_id = $2;

-- name: thread
-- A conversation, newest $3 messages; $4: the channels to show. `delivery` is the state of a
-- staff SMS's touch point (queued, sent, refused...), null for every other line.
SELECT m.id, m.direction, m.channel, m.author, m.staff_name, m.body, m.created_at,
       tp.state AS delivery, tp.last_error AS delivery_error
FROM chat_messages m
LEFT JOIN touch_points tp ON tp.tenant_id = m.tenant_id AND tp.chat_message_id = m.id
WHERE m.tenant_id = $1 AND m.lead_id = $2 AND m.channel = ANY($4::text[])
ORDER BY m.id DESC
LIMIT $3;

-- name: lock_lead
-- Taken first by every unit of work that changes a lead's conversation: two writers of one
-- lead queue here, so counts (rate limits) and state checks read what the other committed.
SELECT state, phone, location_id FROM leads WHERE tenant_id = $1 AND id = $2 FOR UPDATE;

-- name: recent_customer_posts
-- What the per-link rate limit counts: messages and booking requests from the page since $3.
SELECT (SELECT count(*) FROM chat_messages
        WHERE tenant_id = $1 AND lead_id = $2 AND channel = 'web' AND direction = 'inbound'
          AND created_at > $3)
     + (SELECT count(*) FROM appointment_requests
        WHERE tenant_id = $1 AND lead_id = $2 AND created_at > $3) AS n;

-- name: insert_web_message
-- A message written on a page: the customer's ($5 staff e-mail null) or a person's at the shop.
INSERT INTO chat_messages (tenant_id, lead_id, session_id, direction, channel, body, staff_email,
                           staff_name, created_at)
SELECT $1, $2, cs.id, $3, 'web', $4, $5, $6, $7
FROM (SELECT 1) one LEFT JOIN chat_sessions cs ON cs.tenant_id = $1 AND cs.lead_id = $2
RETURNING id;

-- name: move_lead
-- A lead's state change with its timeline row, run after the caller locked the lead in the same
-- transaction (so the from-state read here is the one moved from). $3: target; $4: the states
-- it may come from (leads.can_transition decides, in Python); $5 cause, $6 detail; $7: when
-- not null, the lead's scheduled automated touch points stop with this reason. A person's
-- queued reply (preset_body) is never stopped by this.
WITH old AS (
    SELECT state FROM leads WHERE tenant_id = $1 AND id = $2
), moved AS (
    UPDATE leads SET state = $3, updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND state = ANY($4::text[])
    RETURNING id
), event AS (
    INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail)
    SELECT $1, $2, old.state, $3, $5, $6 FROM old, moved
), stopped AS (
    UPDATE touch_points SET state = 'cancelled', last_error = $7, updated_at = now()
    WHERE $7::text IS NOT NULL AND tenant_id = $1 AND lead_id = $2 AND state = 'scheduled'
      AND preset_body IS NULL
    RETURNING id
)
SELECT old.state AS from_state, EXISTS (SELECT 1 FROM moved) AS moved,
       (SELECT count(*) FROM stopped) AS stopped
FROM old;

-- name: replace_appointment_requests
UPDATE appointment_requests SET status = 'replaced'
WHERE tenant_id = $1 AND lead_id = $2 AND status = 'requested';

-- name: insert_appointment_request
INSERT INTO appointment_requests (tenant_id, lead_id, location_id, slot_start, slot_end, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id;

-- name: confirm_appointment_request
UPDATE appointment_requests SET status = 'confirmed', confirmed_at = $4, confirmed_by = $5
WHERE tenant_id = $1 AND lead_id = $2 AND id = $3 AND status = 'requested'
RETURNING slot_start, slot_end;

-- name: appointment_requests
SELECT id, slot_start, slot_end, status, created_at, confirmed_by FROM appointment_requests
WHERE tenant_id = $1 AND lead_id = $2 AND status <> 'replaced'
ORDER BY id DESC;

-- ======================================================================= staff replies

-- name: sms_opted_out
SELECT EXISTS (SELECT 1 FROM contact_optouts WHERE tenant_id = $1 AND channel = 'sms' AND address = $2) AS opted_out;

-- name: queue_staff_sms
-- A person's SMS reply: its transcript line now (so both pages show it at once, marked queued)
-- and a touch point carrying the text, sent by the touch-point loop through the same opt-out
-- gate as every message. Its step index follows the lead's earlier staff replies (the lead row
-- is locked by the caller, so two replies cannot take the same index).
WITH line AS (
    INSERT INTO chat_messages (tenant_id, lead_id, session_id, direction, channel, address, body,
                               staff_email, staff_name, created_at)
    SELECT $1, $2, cs.id, 'outbound', 'sms', $3, $4, $5, $6, $7
    FROM (SELECT 1) one LEFT JOIN chat_sessions cs ON cs.tenant_id = $1 AND cs.lead_id = $2
    RETURNING id
), tp AS (
    INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name, channel,
                              due_at, preset_body, chat_message_id)
    SELECT $1, $2, 'staff',
           (SELECT COALESCE(max(step_index), -1) + 1 FROM touch_points
            WHERE tenant_id = $1 AND lead_id = $2 AND sequence = 'staff'),
           'staff_reply', 'sms', $7, $4, line.id
    FROM line
)
SELECT id FROM line;

-- ======================================================================= the inbox

-- name: inbox
-- The conversation list: unread first (a customer message after the read marker, or a booking
-- request waiting), then the latest activity. $2: the locations the viewer may see (null: all);
-- $3: a name pattern (ILIKE, escaped by the caller) or null; $4: a phone digits pattern or null;
-- $5: limit. A lead is in the list once it has a message.
SELECT * FROM (
    SELECT l.id, l.location_id, l.first_name, l.last_name, l.phone, l.state,
           c.assigned_to, c.paused_at IS NOT NULL AS paused,
           last.body AS last_body, last.author AS last_author, last.created_at AS last_at,
           cust.at AS last_customer_at,
           EXISTS (SELECT 1 FROM chat_messages u
                   WHERE u.tenant_id = l.tenant_id AND u.lead_id = l.id
                     AND u.direction = 'inbound' AND u.id > COALESCE(c.read_up_to, 0)) AS unread,
           EXISTS (SELECT 1 FROM appointment_requests a
                   WHERE a.tenant_id = l.tenant_id AND a.lead_id = l.id
                     AND a.status = 'requested') AS booking_requested
    FROM leads l
    LEFT JOIN conversations c ON c.tenant_id = l.tenant_id AND c.lead_id = l.id
    JOIN LATERAL (
        SELECT m.body, m.author, m.created_at FROM chat_messages m
        WHERE m.tenant_id = l.tenant_id AND m.lead_id = l.id ORDER BY m.id DESC LIMIT 1
    ) last ON true
    LEFT JOIN LATERAL (
        SELECT max(m.created_at) AS at FROM chat_messages m
        WHERE m.tenant_id = l.tenant_id AND m.lead_id = l.id AND m.direction = 'inbound'
    ) cust ON true
    WHERE l.tenant_id = $1 AND l.attached_to IS NULL
      AND ($2::text[] IS NULL OR l.location_id = ANY($2::text[]))
      AND ($3::text IS NULL OR l.first_name ILIKE $3 OR l.last_name ILIKE $3
           OR (l.first_name || ' ' || l.last_name) ILIKE $3
           OR ($4::text IS NOT NULL AND l.phone LIKE $4))
) conversations
ORDER BY (unread OR booking_requested) DESC, last_at DESC
LIMIT $5;

-- name: conversation
-- One lead for the inbox, only when the viewer may see its location ($3, null: all).
SELECT l.id, l.location_id, l.first_name, l.last_name, l.phone, l.email, l.state, l.vehicle,
       l.services, l.order_number, l.created_at, c.assigned_to, c.paused_at, c.paused_by,
       COALESCE(c.read_up_to, 0) AS read_up_to, cs.seen_at,
       EXISTS (SELECT 1 FROM contact_optouts o WHERE o.tenant_id = l.tenant_id
               AND o.channel = 'sms' AND o.address = l.phone) AS sms_opted_out
FROM leads l
LEFT JOIN conversations c ON c.tenant_id = l.tenant_id AND c.lead_id = l.id
LEFT JOIN chat_sessions cs ON cs.tenant_id = l.tenant_id AND cs.lead_id = l.id
WHERE l.tenant_id = $1 AND l.id = $2 AND ($3::text[] IS NULL OR l.location_id = ANY($3::text[]));

-- name: lead_events
SELECT from_state, to_state, cause, detail, at FROM lead_events
WHERE tenant_id = $1 AND lead_id = $2 ORDER BY id;

-- name: lead_touch_points
-- The automated steps (staff replies show as their messages).
SELECT id, step_name, channel, state, due_at, sent_at, last_error FROM touch_points
WHERE tenant_id = $1 AND lead_id = $2 AND preset_body IS NULL
ORDER BY due_at, id;

-- name: mark_read
INSERT INTO conversations (tenant_id, lead_id, read_up_to) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, lead_id) DO UPDATE
    SET read_up_to = EXCLUDED.read_up_to, updated_at = now()
    WHERE conversations.read_up_to < EXCLUDED.read_up_to;

-- name: assign
INSERT INTO conversations (tenant_id, lead_id, assigned_to) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, lead_id) DO UPDATE SET assigned_to = EXCLUDED.assigned_to, updated_at = now();

-- name: pause_sequence
-- Pausing stops the scheduled automated steps, marked so that resuming finds exactly them.
WITH paused AS (
    UPDATE touch_points SET state = 'cancelled', last_error = 'paused', updated_at = now()
    WHERE tenant_id = $1 AND lead_id = $2 AND state = 'scheduled' AND preset_body IS NULL
    RETURNING id
), flag AS (
    INSERT INTO conversations (tenant_id, lead_id, paused_at, paused_by) VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant_id, lead_id) DO UPDATE
        SET paused_at = EXCLUDED.paused_at, paused_by = EXCLUDED.paused_by, updated_at = now()
), event AS (
    INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail)
    SELECT $1, $2, state, state, 'staff.paused',
           jsonb_build_object('by', $4::text, 'steps', (SELECT count(*) FROM paused))
    FROM leads WHERE tenant_id = $1 AND id = $2
)
SELECT count(*) AS n FROM paused;

-- name: resume_sequence
-- The sequence restarts from the next step due after $3: steps that fell due while it was
-- paused are skipped, not sent in a burst.
WITH resumed AS (
    UPDATE touch_points
    SET state = CASE WHEN due_at >= $3 THEN 'scheduled' ELSE 'skipped' END,
        last_error = CASE WHEN due_at >= $3 THEN NULL ELSE 'fell due while paused' END,
        updated_at = now()
    WHERE tenant_id = $1 AND lead_id = $2 AND state = 'cancelled' AND last_error = 'paused'
    RETURNING state
), flag AS (
    UPDATE conversations SET paused_at = NULL, paused_by = NULL, updated_at = now()
    WHERE tenant_id = $1 AND lead_id = $2
), event AS (
    INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail)
    SELECT $1, $2, state, state, 'staff.resumed',
           jsonb_build_object('by', $4::text,
                              'steps', (SELECT count(*) FROM resumed WHERE state = 'scheduled'))
    FROM leads WHERE tenant_id = $1 AND id = $2
)
SELECT count(*) FILTER (WHERE state = 'scheduled') AS n FROM resumed;

-- ======================================================================= staff sign-in

-- name: create_staff_session
INSERT INTO staff_sessions (tenant_id, token_hash, email, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5);

-- name: staff_session
SELECT email FROM staff_sessions WHERE tenant_id = $1 AND token_hash = $2 AND expires_at > $3;

-- name: delete_staff_session
-- Also sweeps expired sessions of the tenant: sign-outs are rare enough to carry it.
DELETE FROM staff_sessions WHERE tenant_id = $1 AND (token_hash = $2 OR expires_at <= $3);

-- name: signin_failures
-- The failures counted for each key asked about: a key's count lives while failures keep
-- coming, and is forgotten after a quiet window (no failure since $3).
SELECT key, failures, last_at FROM staff_signin_failures
WHERE tenant_id = $1 AND key = ANY($2::text[]) AND last_at > $3;

-- name: record_signin_failure
-- One more failure for each key; a key quiet since $4 starts again at one. Forgotten rows of
-- the tenant are swept here, so guessing many e-mails does not grow the table for good.
WITH swept AS (
    DELETE FROM staff_signin_failures
    WHERE tenant_id = $1 AND last_at <= $4 AND NOT (key = ANY($2::text[]))
)
INSERT INTO staff_signin_failures (tenant_id, key, failures, first_at, last_at)
SELECT $1, k, 1, $3, $3 FROM unnest($2::text[]) AS k
ON CONFLICT (tenant_id, key) DO UPDATE SET
    failures = CASE WHEN staff_signin_failures.last_at > $4
                    THEN staff_signin_failures.failures + 1 ELSE 1 END,
    first_at = CASE WHEN staff_signin_failures.last_at > $4
                    THEN staff_signin_failures.first_at ELSE $3 END,
    last_at = $3;

-- name: clear_signin_failures
DELETE FROM staff_signin_failures WHERE tenant_id = $1 AND key = ANY($2::text[]);
