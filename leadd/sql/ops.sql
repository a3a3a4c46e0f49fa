-- Named queries of the ops API and CLI (issue 9), run only by leadd/store/ops.py.
-- Every query takes the tenant id as $1.

-- ======================================================================= lead list and detail

-- name: ops_list_leads
-- Keyset pagination, newest first: only rows strictly before the cursor ($6, $7) in
-- (created_at, id) order. A lead inserted between two pages is newer than the first page's
-- rows, so it never shifts the later pages: no duplicates, no gaps. The first page passes
-- ('infinity', max uuid), so the cursor is always an index condition on leads_newest.
-- Search (q): $8 an E.164 phone (phones.normalize of q) matched exactly; $9 the lower-cased q
-- contained in the name or the (lower-cased) e-mail; $10 q's digits contained in the phone.
SELECT id, state, location_id, source, order_number, first_name, last_name, phone, email,
       paused_at, attached_to, created_at, updated_at
FROM leads
WHERE tenant_id = $1
  AND ($2::text IS NULL OR state = $2)
  AND ($3::text IS NULL OR location_id = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND (created_at, id) < ($6::timestamptz, $7::uuid)
  AND ($9::text IS NULL
       OR ($8::text IS NOT NULL AND phone = $8)
       OR strpos(lower(concat_ws(' ', first_name, last_name)), $9) > 0
       OR strpos(email, $9) > 0
       OR ($10::text IS NOT NULL AND strpos(phone, $10) > 0))
ORDER BY created_at DESC, id DESC
LIMIT $11;

-- name: ops_lead
SELECT id, state, location_id, source, shopmonkey_order_id, order_number, first_name,
       last_name, phone, email, vehicle, services, enrichment_status, attached_to, paused_at,
       last_error, created_at, updated_at
FROM leads WHERE tenant_id = $1 AND id = $2;

-- name: ops_lead_events
SELECT id, from_state, to_state, cause, actor, detail, at FROM lead_events
WHERE tenant_id = $1 AND lead_id = $2 ORDER BY id;

-- name: ops_lead_touch_points
-- Delivery status: Twilio's (message_status, ranked, never backwards); for e-mail the
-- SendGrid event that matters most (a bounce or drop over a delivery, a delivery over the rest).
-- body: the text a person wrote (kind 'staff'; the inbox shows it until its transcript line
-- exists); a sequence step's rendered text is not part of the timeline.
SELECT t.id, t.kind, t.sequence, t.step_index, t.step_name, t.channel, t.state, t.due_at,
       t.sent_at, t.attempts, t.last_error, t.dry_run, t.author, t.updated_at,
       CASE WHEN t.kind = 'staff' THEN t.body END AS body,
       CASE t.channel
           WHEN 'sms' THEN (SELECT ms.status FROM message_status ms
                            WHERE ms.tenant_id = $1 AND ms.provider_id = t.provider_id)
           ELSE (SELECT e.event FROM email_events e
                 WHERE e.tenant_id = $1 AND e.touch_point_id = t.id
                 ORDER BY e.event IN ('bounce', 'dropped') DESC, e.event = 'delivered' DESC,
                          e.received_at DESC
                 LIMIT 1)
       END AS delivery_status
FROM touch_points t
WHERE t.tenant_id = $1 AND t.lead_id = $2
ORDER BY t.due_at, t.id;

-- name: ops_lead_messages
-- The transcript both ways. Outbound lines are matched to their touch point by provider id
-- (for the author of a staff message written before chat_messages.author existed, and the
-- e-mail status); dry-run sends carry a "DRY..." provider id (providers/result.py).
SELECT m.id, m.direction, m.channel, m.body, m.provider_id, m.created_at,
       COALESCE(m.author, t.author) AS author,
       COALESCE(m.provider_id LIKE 'DRY%', false) AS dry_run,
       CASE m.channel
           WHEN 'sms' THEN (SELECT ms.status FROM message_status ms
                            WHERE ms.tenant_id = $1 AND ms.provider_id = m.provider_id)
           ELSE (SELECT e.event FROM email_events e
                 WHERE e.tenant_id = $1 AND e.touch_point_id = t.id
                 ORDER BY e.event IN ('bounce', 'dropped') DESC, e.event = 'delivered' DESC,
                          e.received_at DESC
                 LIMIT 1)
       END AS delivery_status
FROM chat_messages m
LEFT JOIN touch_points t ON t.tenant_id = $1 AND t.lead_id = $2 AND m.direction = 'outbound'
                        AND t.provider_id = m.provider_id
WHERE m.tenant_id = $1 AND m.lead_id = $2
ORDER BY m.created_at, m.id;

-- name: ops_lead_opt_outs
-- Opt-outs live on the contact: those of this lead's phone (SMS) and e-mail (e-mail).
SELECT channel, address, reason, created_at FROM contact_optouts
WHERE tenant_id = $1
  AND ((channel = 'sms' AND address = $2) OR (channel = 'email' AND address = $3))
ORDER BY created_at;

-- ======================================================================= steering a lead

-- name: ops_lock_lead
-- The lead row is the lock for every change an operator makes to it (state, pause, staff
-- message), serialised with intake and inbound SMS, which lock it too.
SELECT l.id, l.state, l.phone, l.paused_at,
       EXISTS (SELECT 1 FROM contact_optouts o
               WHERE o.tenant_id = $1 AND o.channel = 'sms' AND o.address = l.phone)
           AS sms_opted_out
FROM leads l WHERE l.tenant_id = $1 AND l.id = $2
FOR UPDATE OF l;

-- name: ops_insert_event
INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, detail, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: ops_set_paused
UPDATE leads SET paused_at = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2;

-- name: ops_skip_missed_steps
-- On resume: automated steps that came due while the lead was paused (due in ($3, $4]) are
-- skipped, not sent in a burst: "it's been a day, still interested?" a week late, three at
-- once, reads worse than nothing. Later steps keep their schedule; staff messages are never
-- held by a pause, so none is waiting here.
UPDATE touch_points SET state = 'skipped', last_error = $5, updated_at = now()
WHERE tenant_id = $1 AND lead_id = $2 AND state = 'scheduled' AND kind = 'sequence'
  AND due_at > $3 AND due_at <= $4
RETURNING id;

-- name: ops_insert_staff_message
-- A person's SMS, queued as a touch point the send loop delivers (opt-out checked again at
-- send time). step_index: the next one of the lead's 'staff' pseudo-sequence, unique by
-- UNIQUE (lead_id, sequence, step_index); safe because ops_lock_lead holds the lead row.
INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name, channel, due_at,
                          kind, body, author)
SELECT $1, $2, 'staff', COALESCE(max(step_index) + 1, 0), 'staff', 'sms', $3, 'staff', $4, $5
FROM touch_points WHERE tenant_id = $1 AND lead_id = $2 AND sequence = 'staff'
RETURNING id, due_at;

-- ======================================================================= opt-outs

-- name: ops_list_opt_outs
-- Newest first, keyset on (created_at, channel, address) like the lead list; the first page
-- passes ('infinity', '', ''), which every row precedes.
SELECT channel, address, reason, created_at FROM contact_optouts
WHERE tenant_id = $1 AND ($2::text IS NULL OR channel = $2)
  AND (created_at, channel, address) < ($3::timestamptz, $4::text, $5::text)
ORDER BY created_at DESC, channel DESC, address DESC
LIMIT $6;

-- name: ops_lift_email_opt_out
-- An operator re-subscribes an e-mail address: the opt-out goes, a record of it stays.
-- (Never SMS: only the customer's START lifts a STOP; the service refuses before this.)
WITH gone AS (
    DELETE FROM contact_optouts
    WHERE tenant_id = $1 AND channel = 'email' AND address = $2
    RETURNING channel, address, reason, created_at
), lifted AS (
    INSERT INTO contact_optout_lifts (tenant_id, channel, address, reason, opted_out_at, lifted_by)
    SELECT $1, channel, address, reason, created_at, $3 FROM gone
)
SELECT channel, address, reason, created_at FROM gone;

-- ======================================================================= funnel report

-- name: ops_report
-- The funnel over the leads created in [$2, $3) (one location when $4 is set), in one
-- statement so every number comes from one snapshot. GROUPING SETS give each location and the
-- total (grouped = 1) in one pass. $5 is the funnel's stage order: lifecycle.STATES without 'lost',
-- passed in so the lifecycle stays defined once.
WITH cohort AS (
    SELECT l.id, l.location_id, l.source, l.state, l.created_at,
           -- The furthest stage reached, from the timeline: a lead lost after it qualified
           -- still counts as qualified. array_position gives NULL for 'lost'.
           GREATEST(array_position($5::text[], l.state),
                    (SELECT max(array_position($5::text[], e.to_state)) FROM lead_events e
                     WHERE e.tenant_id = $1 AND e.lead_id = l.id)) AS reached,
           -- Speed to lead ends at the first message a provider accepted (dry-run accepted none).
           (SELECT min(t.sent_at) FROM touch_points t
            WHERE t.tenant_id = $1 AND t.lead_id = l.id AND t.state = 'sent' AND NOT t.dry_run)
               AS first_sent,
           EXISTS (SELECT 1 FROM chat_messages m
                   WHERE m.tenant_id = $1 AND m.lead_id = l.id AND m.direction = 'inbound')
               AS replied,
           EXISTS (SELECT 1 FROM contact_optouts o
                   WHERE o.tenant_id = $1 AND o.channel = 'sms' AND o.address = l.phone)
               AS sms_opted_out,
           EXISTS (SELECT 1 FROM contact_optouts o
                   WHERE o.tenant_id = $1 AND o.channel = 'email' AND o.address = l.email)
               AS email_opted_out
    FROM leads l
    WHERE l.tenant_id = $1 AND l.created_at >= $2 AND l.created_at < $3
      AND ($4::text IS NULL OR l.location_id = $4)
), totals AS (
    SELECT location_id, GROUPING(location_id) AS grouped,
           count(*) AS leads,
           count(*) FILTER (WHERE reached >= array_position($5::text[], 'contacted')) AS contacted,
           count(*) FILTER (WHERE replied) AS replied,
           round(count(*) FILTER (WHERE replied)::numeric / NULLIF(count(*) FILTER (
               WHERE reached >= array_position($5::text[], 'contacted')), 0), 4) AS reply_rate,
           count(*) FILTER (WHERE state = 'lost') AS lost,
           count(first_sent) AS answered,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_sent - created_at))
               AS speed_p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM first_sent - created_at))
               AS speed_p90,
           count(*) FILTER (WHERE sms_opted_out) AS opted_out_sms,
           count(*) FILTER (WHERE email_opted_out) AS opted_out_email
    FROM cohort
    -- () yields the total row even for an empty window.
    GROUP BY GROUPING SETS ((location_id), ())
), by_source AS (
    SELECT location_id, GROUPING(location_id) AS grouped, source AS key, count(*) AS n
    FROM cohort GROUP BY GROUPING SETS ((location_id, source), (source))
), by_state AS (
    SELECT location_id, GROUPING(location_id) AS grouped, state AS key, count(*) AS n
    FROM cohort GROUP BY GROUPING SETS ((location_id, state), (state))
), funnel AS (
    SELECT c.location_id, GROUPING(c.location_id) AS grouped, s.stage, s.rank,
           count(*) FILTER (WHERE c.reached >= s.rank) AS reached
    FROM unnest($5::text[]) WITH ORDINALITY AS s(stage, rank)
    CROSS JOIN cohort c
    GROUP BY GROUPING SETS ((c.location_id, s.stage, s.rank), (s.stage, s.rank))
), funnel_rates AS (
    -- Conversion from the previous stage: reached(stage) / reached(previous stage).
    SELECT location_id, grouped, stage, rank, reached,
           round(reached::numeric / NULLIF(lag(reached) OVER (
               PARTITION BY grouped, location_id ORDER BY rank), 0), 4) AS conversion
    FROM funnel
), sends AS (
    -- Touch points that reached a provider or failed trying, with their delivery outcome:
    -- Twilio's final status, or for e-mail a bounce/drop (failed) over a delivery.
    SELECT c.location_id, t.channel, t.state, t.dry_run,
           CASE t.channel
               WHEN 'sms' THEN (SELECT CASE WHEN ms.status IN ('delivered', 'read') THEN 'delivered'
                                            WHEN ms.status IN ('failed', 'undelivered') THEN 'failed'
                                       END
                                FROM message_status ms
                                WHERE ms.tenant_id = $1 AND ms.provider_id = t.provider_id)
               ELSE (SELECT CASE WHEN bool_or(e.event IN ('bounce', 'dropped')) THEN 'failed'
                                 WHEN bool_or(e.event = 'delivered') THEN 'delivered'
                            END
                     FROM email_events e WHERE e.tenant_id = $1 AND e.touch_point_id = t.id)
           END AS delivery
    FROM cohort c
    JOIN touch_points t ON t.tenant_id = $1 AND t.lead_id = c.id
    WHERE t.state IN ('sent', 'failed')
), messages AS (
    -- sent: accepted by the provider (not dry-run); delivered: of those, confirmed delivered;
    -- failed: refused or given up on (touch point failed), or accepted but not delivered.
    SELECT location_id, GROUPING(location_id) AS grouped, channel,
           count(*) FILTER (WHERE state = 'sent' AND NOT dry_run) AS sent,
           count(*) FILTER (WHERE state = 'sent' AND dry_run) AS dry_run,
           count(*) FILTER (WHERE state = 'sent' AND delivery = 'delivered') AS delivered,
           count(*) FILTER (WHERE state = 'failed' OR delivery = 'failed') AS failed
    FROM sends
    GROUP BY GROUPING SETS ((location_id, channel), (channel))
)
SELECT (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.grouped, x.location_id), '[]')
        FROM totals x) AS totals,
       (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.grouped, x.location_id, x.key), '[]')
        FROM by_source x) AS by_source,
       (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.grouped, x.location_id, x.key), '[]')
        FROM by_state x) AS by_state,
       (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.grouped, x.location_id, x.rank), '[]')
        FROM funnel_rates x) AS funnel,
       (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.grouped, x.location_id, x.channel), '[]')
        FROM messages x) AS messages;
