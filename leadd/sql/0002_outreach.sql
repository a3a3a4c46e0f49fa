-- Outreach: touch points (scheduled messages), every send attempt, opt-outs, delivery status.

CREATE TABLE touch_points (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    lead_id       uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    sequence      text NOT NULL,
    step_index    integer NOT NULL,
    step_name     text NOT NULL,
    channel       text NOT NULL CHECK (channel IN ('sms', 'email')),
    -- scheduled -> sending -> sent | failed | cancelled | skipped.
    -- `sending` carries a lease: a row still `sending` after lease_until was claimed by a
    -- daemon that died mid-send; it is reconciled with the provider before any resend.
    state         text NOT NULL DEFAULT 'scheduled' CHECK (state IN
                    ('scheduled', 'sending', 'sent', 'failed', 'cancelled', 'skipped')),
    due_at        timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    claimed_by    text,
    claimed_at    timestamptz,
    lease_until   timestamptz,
    recipient     text,                       -- what we sent to (E.164 / e-mail), for reconcile
    sender        text,
    body          text,                       -- rendered text of the last attempt
    provider_id   text,
    sent_at       timestamptz,
    dry_run       boolean NOT NULL DEFAULT false,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lead_id, sequence, step_index)
);
-- The claim query walks this index: due scheduled rows in due order.
CREATE INDEX touch_points_due ON touch_points (tenant_id, due_at, id) WHERE state = 'scheduled';
CREATE INDEX touch_points_sending ON touch_points (tenant_id, lease_until) WHERE state = 'sending';
CREATE INDEX touch_points_lead ON touch_points (tenant_id, lead_id);
CREATE INDEX touch_points_recipient_sent ON touch_points (tenant_id, recipient, sent_at)
    WHERE state = 'sent' AND channel = 'sms';

CREATE TABLE message_attempts (
    id              bigserial PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    touch_point_id  bigint REFERENCES touch_points(id) ON DELETE CASCADE,
    lead_id         uuid,
    channel         text NOT NULL,
    provider        text NOT NULL,
    provider_id     text,
    http_status     integer,
    error_code      text,
    error_message   text,
    latency_ms      double precision,
    outcome         text NOT NULL,            -- sent | retry | failed | reconciled | skipped
    dry_run         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_attempts_tp ON message_attempts (tenant_id, touch_point_id);

-- Opt-outs live on the contact (phone or e-mail), not the lead, so they outlive every lead.
CREATE TABLE contact_optouts (
    tenant_id   uuid NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('sms', 'email')),
    address     text NOT NULL,
    reason      text NOT NULL,              -- keyword | twilio_21610 | bounce | spamreport | unsubscribe
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, address)
);

-- Delivery status per provider message; rank guards against out-of-order callbacks.
CREATE TABLE message_status (
    tenant_id    uuid NOT NULL,
    provider_id  text NOT NULL,
    status       text NOT NULL,
    rank         smallint NOT NULL,
    error_code   text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider_id)
);

-- SendGrid event dedupe (sg_event_id) and record.
CREATE TABLE email_events (
    tenant_id       uuid NOT NULL,
    sg_event_id     text NOT NULL,
    event           text NOT NULL,
    email           text,
    lead_id         uuid,
    touch_point_id  bigint,
    sg_message_id   text,
    payload         jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, sg_event_id)
);
