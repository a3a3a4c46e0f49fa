-- Conversations on the web (issue 10): the customer chat page behind the SMS link, the staff
-- inbox, and live updates between daemons through LISTEN/NOTIFY. Who wrote a message is
-- chat_messages.author (0006); a paused sequence is leads.paused_at (0006); a staff SMS is a
-- touch point of kind 'staff' (0006): this file adds none of those again.

-- Chat links: only a hash of the token is stored. The token itself (256 bits, derived from a
-- server secret, see leadd/chatlinks.py) exists in the message that carries it, so a copy of
-- this table opens no one's conversation. Links expire. seen_at: when the customer's page was
-- last open (loaded, or its live stream still connected); a staff reply goes to the page
-- instead of SMS while it is recent. The unsubscribe link has its own token (0004).
ALTER TABLE chat_sessions
    ADD COLUMN token_hash bytea,
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN seen_at timestamptz;
-- Sessions made before this file: their raw token becomes its hash (links already sent keep
-- working until they expire), and the raw tokens go.
UPDATE chat_sessions SET token_hash = sha256(convert_to(token, 'UTF8')),
    expires_at = created_at + interval '30 days';
ALTER TABLE chat_sessions
    DROP COLUMN token,
    ALTER COLUMN token_hash SET NOT NULL,
    ALTER COLUMN expires_at SET NOT NULL;
CREATE UNIQUE INDEX chat_sessions_token_hash ON chat_sessions (token_hash);

-- Shared-inbox state of one lead's conversation (created on first use): staff have read the
-- customer's messages up to read_up_to (a chat_messages id: unread = a customer message after
-- it), and who owns it. Tenancy by the composite key, as 0008 made every lead child's.
CREATE TABLE conversations (
    tenant_id    uuid NOT NULL,
    lead_id      uuid NOT NULL,
    read_up_to   bigint NOT NULL DEFAULT 0,
    assigned_to  text,                       -- staff e-mail
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, lead_id),
    CONSTRAINT conversations_lead_fkey FOREIGN KEY (tenant_id, lead_id)
        REFERENCES leads (tenant_id, id) ON DELETE CASCADE
);

-- A time the customer asked for on the chat page; staff confirm it. A newer request replaces
-- an unconfirmed older one.
CREATE TABLE appointment_requests (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    lead_id       uuid NOT NULL,
    location_id   text NOT NULL,
    slot_start    timestamptz NOT NULL,
    slot_end      timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'requested'
                    CHECK (status IN ('requested', 'confirmed', 'replaced')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    confirmed_at  timestamptz,
    confirmed_by  text,
    CONSTRAINT appointment_requests_lead_fkey FOREIGN KEY (tenant_id, lead_id)
        REFERENCES leads (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT appointment_requests_location_fkey FOREIGN KEY (tenant_id, location_id)
        REFERENCES locations (tenant_id, id)
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
-- writer (SMS webhook, ops API and CLI, the pages) is heard without knowing of it.
-- Not the automated send path: a committing transaction that has notified takes a global lock
-- (measured: 20 writers inserting messages went from ~2,700 to ~1,250 commits/s), so the
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

-- A state change is 'state'; a pause or resume (leads.paused_at) is 'conversation'.
CREATE FUNCTION leadd_notify_lead() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM leadd_notify(NEW.tenant_id, NEW.id,
        CASE WHEN OLD.state IS DISTINCT FROM NEW.state THEN 'state' ELSE 'conversation' END);
    RETURN NULL;
END $$;

-- A message from the customer, or one a person wrote (author: an inbox user, an API token, a
-- CLI user); an automated step's line has no author.
CREATE TRIGGER chat_messages_notify AFTER INSERT ON chat_messages
    FOR EACH ROW WHEN (NEW.direction = 'inbound' OR NEW.author IS NOT NULL)
    EXECUTE FUNCTION leadd_notify_child('message');
CREATE TRIGGER leads_notify AFTER UPDATE OF state, paused_at ON leads
    FOR EACH ROW WHEN ((OLD.state IS DISTINCT FROM NEW.state
                        AND NOT (OLD.state = 'new' AND NEW.state = 'contacted'))
                       OR OLD.paused_at IS DISTINCT FROM NEW.paused_at)
    EXECUTE FUNCTION leadd_notify_lead();
CREATE TRIGGER appointment_requests_notify AFTER INSERT OR UPDATE ON appointment_requests
    FOR EACH ROW EXECUTE FUNCTION leadd_notify_child('appointment');
CREATE TRIGGER conversations_notify AFTER INSERT OR UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION leadd_notify_child('conversation');
-- A staff SMS queued, going out, failing or refused changes how the inbox shows it.
CREATE TRIGGER touch_points_staff_queued_notify AFTER INSERT ON touch_points
    FOR EACH ROW WHEN (NEW.kind = 'staff')
    EXECUTE FUNCTION leadd_notify_child('delivery');
CREATE TRIGGER touch_points_staff_notify AFTER UPDATE OF state ON touch_points
    FOR EACH ROW WHEN (NEW.kind = 'staff' AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION leadd_notify_child('delivery');
