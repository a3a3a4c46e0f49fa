-- Operations (issue 9): who did what, staff messages, paused sequences, and the indexes the
-- ops API's lead list, search and report walk.

-- A touch point is either a step of a configured sequence or a message a person wrote (staff),
-- which carries its text and author from the start and is never rendered from a template.
ALTER TABLE touch_points
    ADD COLUMN kind text NOT NULL DEFAULT 'sequence' CHECK (kind IN ('sequence', 'staff')),
    ADD COLUMN author text;

-- A paused lead's automated touch points are not claimed (staff messages still are).
ALTER TABLE leads ADD COLUMN paused_at timestamptz;

-- Who caused a timeline row when a person did (API token name, cli:<unix user>); NULL for leadd.
ALTER TABLE lead_events ADD COLUMN actor text;

-- Who wrote a transcript line when a person did; NULL for automated messages and the customer.
ALTER TABLE chat_messages ADD COLUMN author text;

-- Keyset pagination of the lead list, newest first (a backward scan): (created_at, id) is
-- unique and never changes. Also serves the report's created_at window.
CREATE INDEX leads_newest ON leads (tenant_id, created_at, id);
-- Search by phone or e-mail over every lead (leads_open_* cover only open, unattached ones).
-- A new lead has neither until enrichment, so the webhook's insert writes no entry here.
CREATE INDEX leads_phone ON leads (tenant_id, phone) WHERE phone IS NOT NULL;
CREATE INDEX leads_email ON leads (tenant_id, email) WHERE email IS NOT NULL;

-- E-mail delivery status per touch point (lead detail, report).
CREATE INDEX email_events_touch_point ON email_events (tenant_id, touch_point_id)
    WHERE touch_point_id IS NOT NULL;

-- Opt-out list, newest first (a backward scan, keyset on (created_at, channel, address)).
CREATE INDEX contact_optouts_newest ON contact_optouts (tenant_id, created_at, channel, address);

-- An operator re-subscribing an e-mail address is a compliance decision: keep who and when,
-- and what the opt-out was, after the contact_optouts row is gone.
CREATE TABLE contact_optout_lifts (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    channel       text NOT NULL,
    address       text NOT NULL,
    reason        text NOT NULL,        -- the lifted opt-out's reason
    opted_out_at  timestamptz NOT NULL,
    lifted_by     text NOT NULL,
    lifted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_optout_lifts_address ON contact_optout_lifts (tenant_id, channel, address);
