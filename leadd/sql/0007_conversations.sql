-- Conversations on the web (issue 10): the customer chat page behind the SMS link, the staff
-- inbox, and live updates between daemons through LISTEN/NOTIFY.

-- Chat links: only a hash of the token is stored. The token itself (256 bits, derived from a
-- server secret, see leadd/chatlinks.py) exists in the message that carries it, so a
-- copy of this table opens no one's conversation. Links expire. seen_at: when the customer's
-- page was last open (loaded, or its live stream still connected); a staff reply goes to the
-- page instead of SMS while it is recent.
ALTER TABLE chat_sessions
    ALTER COLUMN token DROP NOT NULL,
    ADD COLUMN token_hash bytea,
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN seen_at timestamptz;
-- Sessions made before this file: their raw token becomes its hash (links already sent keep
-- working until they expire) and the raw token is dropped.
UPDATE chat_sessions SET token_hash = sha256(convert_to(token, 'UTF8')),
    expires_at = created_at + interval '30 days', token = NULL;
ALTER TABLE chat_sessions
    ALTER COLUMN token_hash SET NOT NULL,
    ALTER COLUMN expires_at SET NOT NULL;
CREATE UNIQUE INDEX chat_sessions_token_hash ON chat_sessions (token_hash);

-- Who wrote each message. Derived, so every existing insert (inbound SMS, the transcript of
-- automated sends) is classified without being changed: inbound is the customer, outbound with
-- a staff e-mail is a person at the shop, any other outbound is the automated sequence.
ALTER TABLE chat_messages
    ADD COLUMN staff_email text,
    ADD COLUMN staff_name text,
    ADD COLUMN author text GENERATED ALWAYS AS (
        CASE WHEN direction = 'inbound' THEN 'customer'
             WHEN staff_email IS NOT NULL THEN 'staff'
             ELSE 'automation' END) STORED;

-- A staff reply sent by SMS is a touch point with its text written by a person (not rendered
-- from a step) and a link to the transcript line created when it was written; the touch-point
-- loop sends it through the same opt-out gate as every message.
ALTER TABLE touch_points
    ADD COLUMN preset_body text,
    ADD COLUMN chat_message_id bigint REFERENCES chat_messages(id) ON DELETE SET NULL;
CREATE INDEX touch_points_chat_message ON touch_points (tenant_id, chat_message_id)
    WHERE chat_message_id IS NOT NULL;

-- Shared-inbox state of one lead's conversation (created on first use): staff have read the
-- customer's messages up to read_up_to (a chat_messages id: unread = a customer message after
-- it), who owns it, whether its automated sequence is paused.
CREATE TABLE conversations (
    tenant_id    uuid NOT NULL,
    lead_id      uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    read_up_to   bigint NOT NULL DEFAULT 0,
    assigned_to  text,                       -- staff e-mail
    paused_at    timestamptz,
    paused_by    text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, lead_id)
);

-- A time the customer asked for on the chat page; staff confirm it. A newer request replaces
-- an unconfirmed older one.
CREATE TABLE appointment_requests (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    lead_id       uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    location_id   text NOT NULL,
    slot_start    timestamptz NOT NULL,
    slot_end      timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'requested'
                    CHECK (status IN ('requested', 'confirmed', 'replaced')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    confirmed_at  timestamptz,
    confirmed_by  text
);
CREATE INDEX appointment_requests_lead ON appointment_requests (tenant_id, lead_id, id);

-- Staff sign-in sessions, in the database so any daemon behind the address accepts them.
-- Only the hash of the cookie's value is stored.
CREATE TABLE staff_sessions (
    tenant_id   uuid NOT NULL,
    token_hash  bytea NOT NULL,
    email       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, token_hash)
);

-- Failed sign-ins per account and per client address (keys are hashes, not the e-mail or the
-- address), shared by every daemon so the slowdown cannot be dodged by switching between them.
CREATE TABLE staff_signin_failures (
    tenant_id  uuid NOT NULL,
    key        text NOT NULL,
    failures   integer NOT NULL,
    first_at   timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- Live updates: one channel for every daemon on this database. The payload names the tenant,
-- the lead, its location (so a page only hears about leads its viewer may see) and what
-- changed; never a name, number or message text. NOTIFY is sent at commit and not at all on
-- rollback, so a page never hears of a change that did not happen. Triggers, so that every
-- writer (SMS webhook, ops API, the pages) is heard without knowing of it.
-- Not the automated send path: a committing transaction that has notified takes a global lock
-- (measured here: 20 writers inserting messages went from ~2,700 to ~1,250 commits/s), so the
-- transcript line of an automated message and the first send's new -> contacted stay silent;
-- a page shows them on its next refresh. What people write, and what people do, is heard.
CREATE FUNCTION leadd_notify(tenant uuid, lead uuid, kind text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('leadd_events', json_build_object(
        'tenant', tenant, 'lead', lead, 'kind', kind,
        'location', (SELECT location_id FROM leads WHERE tenant_id = tenant AND id = lead))::text)
$$;

CREATE FUNCTION leadd_notify_child() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.lead_id IS NOT NULL THEN
        PERFORM leadd_notify(NEW.tenant_id, NEW.lead_id, TG_ARGV[0]);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION leadd_notify_lead_state() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM leadd_notify(NEW.tenant_id, NEW.id, 'state');
    RETURN NULL;
END $$;

CREATE TRIGGER chat_messages_notify AFTER INSERT ON chat_messages
    FOR EACH ROW WHEN (NEW.direction = 'inbound' OR NEW.staff_email IS NOT NULL)
    EXECUTE FUNCTION leadd_notify_child('message');
CREATE TRIGGER leads_state_notify AFTER UPDATE OF state ON leads
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                       AND NOT (OLD.state = 'new' AND NEW.state = 'contacted'))
    EXECUTE FUNCTION leadd_notify_lead_state();
CREATE TRIGGER appointment_requests_notify AFTER INSERT OR UPDATE ON appointment_requests
    FOR EACH ROW EXECUTE FUNCTION leadd_notify_child('appointment');
CREATE TRIGGER conversations_notify AFTER INSERT OR UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION leadd_notify_child('conversation');
-- A staff SMS going out, failing or refused changes how its line shows.
CREATE TRIGGER touch_points_staff_notify AFTER UPDATE OF state ON touch_points
    FOR EACH ROW WHEN (NEW.chat_message_id IS NOT NULL AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION leadd_notify_child('delivery');
