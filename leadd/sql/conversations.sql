-- Named queries of the chat page, the staff inbox and staff sign-in (issue 10), run only by
-- leadd/store/conversations.py, inbox.py and staff.py. Every query takes the tenant id as $1.
-- Times that decide something (expiry, rate limits, sessions) come from the runtime clock as a
-- parameter. Locking a lead, moving its state and writing its timeline use the ops queries
-- (ops_lock_lead, set_lead_state, ops_insert_event): one definition of each.

-- ======================================================================= the chat page

-- name: chat_session
-- The chat page's lookup by token hash ($2), with what the page shows: first name only.
SELECT cs.lead_id, cs.expires_at, cs.seen_at, l.location_id, l.first_name, l.vehicle,
       l.services, l.state, l.order_number
FROM chat_sessions cs
JOIN leads l ON l.tenant_id = cs.tenant_id AND l.id = cs.lead_id
WHERE cs.tenant_id = $1 AND cs.token_hash = $2;

-- name: chat_touch_seen
UPDATE chat_sessions SET seen_at = GREATEST(seen_at, $3) WHERE tenant_id = $1 AND lead_id = $2;

-- name: chat_page_closed
-- The page's live stream ended: it counts as open only until $3 (a reload reconnects first).
UPDATE chat_sessions SET seen_at = LEAST(seen_at, $3) WHERE tenant_id = $1 AND lead_id = $2;

-- name: chat_page_seen_at
SELECT seen_at FROM chat_sessions WHERE tenant_id = $1 AND lead_id = $2;

-- name: chat_thread
-- The customer's conversation: the newest $3 lines on the channels $4, in the columns of the
-- ops transcript (ops_lead_messages, models.MessageView). Without the delivery status: the
-- customer's page does not show it.
SELECT m.id, m.direction, m.channel, m.body, m.provider_id, m.author,
       COALESCE(m.provider_id LIKE 'DRY%', false) AS dry_run,
       NULL::text AS delivery_status, m.created_at
FROM chat_messages m
WHERE m.tenant_id = $1 AND m.lead_id = $2 AND m.channel = ANY($4::text[])
ORDER BY m.id DESC
LIMIT $3;

-- name: chat_recent_posts
-- What the per-link rate limit counts: messages and booking requests from the page since $3.
-- Run after ops_lock_lead, so two posts of one link count each other.
SELECT (SELECT count(*) FROM chat_messages
        WHERE tenant_id = $1 AND lead_id = $2 AND channel = 'web' AND direction = 'inbound'
          AND created_at > $3)
     + (SELECT count(*) FROM appointment_requests
        WHERE tenant_id = $1 AND lead_id = $2 AND created_at > $3) AS n;

-- name: chat_insert_web_message
-- A message written on a page: the customer's ($3 'inbound', $5 author null) or a person's at
-- the shop ($3 'outbound', $5 the author, as every message a person writes records it).
INSERT INTO chat_messages (tenant_id, lead_id, session_id, direction, channel, body, author,
                           created_at)
SELECT $1, $2, cs.id, $3, 'web', $4, $5, $6
FROM (SELECT 1) one LEFT JOIN chat_sessions cs ON cs.tenant_id = $1 AND cs.lead_id = $2
RETURNING id;

-- name: chat_stop_automation
-- A person is talking now (the customer replied, asked for a time): the lead's automated steps
-- stop, including those still waiting for a send slot (not yet gated, as cancel_for_address
-- does). A message a person at the shop queued (kind 'staff') still goes.
UPDATE touch_points SET state = 'cancelled', last_error = $3, lease_until = NULL, updated_at = now()
WHERE tenant_id = $1 AND lead_id = $2 AND kind = 'sequence'
  AND (state = 'scheduled' OR (state = 'sending' AND gated_at IS NULL));

-- name: chat_replace_appointment_requests
UPDATE appointment_requests SET status = 'replaced'
WHERE tenant_id = $1 AND lead_id = $2 AND status = 'requested';

-- name: chat_insert_appointment_request
INSERT INTO appointment_requests (tenant_id, lead_id, location_id, slot_start, slot_end, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id;

-- name: chat_confirm_appointment_request
UPDATE appointment_requests SET status = 'confirmed', confirmed_at = $4, confirmed_by = $5
WHERE tenant_id = $1 AND lead_id = $2 AND id = $3 AND status = 'requested'
RETURNING slot_start, slot_end;

-- name: chat_appointment_requests
SELECT id, slot_start, slot_end, status, created_at, confirmed_by FROM appointment_requests
WHERE tenant_id = $1 AND lead_id = $2 AND status <> 'replaced'
ORDER BY id DESC;

-- ======================================================================= the inbox

-- name: inbox_list
-- The conversation list: unread first (a customer message after the read marker, or a booking
-- request waiting), then the latest activity. $2: the locations the viewer may see (null:
-- all); $3-$5: a search, matched exactly as ops_list_leads matches it (models.LeadSearch: $3 an
-- E.164 phone, $4 lower-cased text in the name or e-mail, $5 digits in the phone); $6: limit.
-- A lead is in the list once it has a message.
SELECT * FROM (
    SELECT l.id, l.location_id, l.first_name, l.last_name, l.phone, l.state,
           c.assigned_to, l.paused_at IS NOT NULL AS paused,
           last.body AS last_body, last.direction AS last_direction, last.author AS last_author,
           last.created_at AS last_at, cust.at AS last_customer_at,
           EXISTS (SELECT 1 FROM chat_messages u
                   WHERE u.tenant_id = l.tenant_id AND u.lead_id = l.id
                     AND u.direction = 'inbound' AND u.id > COALESCE(c.read_up_to, 0)) AS unread,
           EXISTS (SELECT 1 FROM appointment_requests a
                   WHERE a.tenant_id = l.tenant_id AND a.lead_id = l.id
                     AND a.status = 'requested') AS booking_requested
    FROM leads l
    LEFT JOIN conversations c ON c.tenant_id = l.tenant_id AND c.lead_id = l.id
    JOIN LATERAL (
        SELECT m.body, m.direction, m.author, m.created_at FROM chat_messages m
        WHERE m.tenant_id = l.tenant_id AND m.lead_id = l.id ORDER BY m.id DESC LIMIT 1
    ) last ON true
    LEFT JOIN LATERAL (
        SELECT max(m.created_at) AS at FROM chat_messages m
        WHERE m.tenant_id = l.tenant_id AND m.lead_id = l.id AND m.direction = 'inbound'
    ) cust ON true
    WHERE l.tenant_id = $1 AND l.attached_to IS NULL
      AND ($2::text[] IS NULL OR l.location_id = ANY($2::text[]))
      AND ($4::text IS NULL
           OR ($3::text IS NOT NULL AND l.phone = $3)
           OR strpos(lower(concat_ws(' ', l.first_name, l.last_name)), $4) > 0
           OR strpos(l.email, $4) > 0
           OR ($5::text IS NOT NULL AND strpos(l.phone, $5) > 0))
) conversations
ORDER BY (unread OR booking_requested) DESC, last_at DESC
LIMIT $6;

-- name: inbox_conversation_state
-- One lead's inbox facts, only when the viewer may see its location ($3, null: all): no row
-- for another location's lead, exactly as for one that does not exist.
SELECT l.id AS lead_id, l.location_id, c.assigned_to, COALESCE(c.read_up_to, 0) AS read_up_to,
       cs.seen_at
FROM leads l
LEFT JOIN conversations c ON c.tenant_id = l.tenant_id AND c.lead_id = l.id
LEFT JOIN chat_sessions cs ON cs.tenant_id = l.tenant_id AND cs.lead_id = l.id
WHERE l.tenant_id = $1 AND l.id = $2 AND ($3::text[] IS NULL OR l.location_id = ANY($3::text[]));

-- name: inbox_mark_read
INSERT INTO conversations (tenant_id, lead_id, read_up_to) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, lead_id) DO UPDATE
    SET read_up_to = EXCLUDED.read_up_to, updated_at = now()
    WHERE conversations.read_up_to < EXCLUDED.read_up_to;

-- name: inbox_assign
INSERT INTO conversations (tenant_id, lead_id, assigned_to) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, lead_id) DO UPDATE SET assigned_to = EXCLUDED.assigned_to, updated_at = now();

-- ======================================================================= staff sign-in

-- name: staff_create_session
INSERT INTO staff_sessions (tenant_id, token_hash, email, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5);

-- name: staff_session
SELECT email FROM staff_sessions WHERE tenant_id = $1 AND token_hash = $2 AND expires_at > $3;

-- name: staff_delete_session
-- Also sweeps expired sessions of the tenant: sign-outs are rare enough to carry it.
DELETE FROM staff_sessions WHERE tenant_id = $1 AND (token_hash = $2 OR expires_at <= $3);

-- name: staff_signin_failures
-- The failures counted for each key asked about: a key's count lives while failures keep
-- coming, and is forgotten after a quiet window (no failure since $3).
SELECT key, failures, last_at FROM staff_signin_failures
WHERE tenant_id = $1 AND key = ANY($2::text[]) AND last_at > $3;

-- name: staff_record_signin_failure
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

-- name: staff_clear_signin_failures
DELETE FROM staff_signin_failures WHERE tenant_id = $1 AND key = ANY($2::text[]);
