-- leadd core schema. Every row carries tenant_id: one database may serve several tenant
-- hosts (and tests), so every query is scoped by tenant.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Locations, hours and catalog mirror the YAML (the source of truth), upserted at start-up.
CREATE TABLE locations (
    tenant_id               uuid NOT NULL REFERENCES tenants(id),
    id                      text NOT NULL,
    name                    text NOT NULL,
    shopmonkey_location_id  text,
    timezone                text NOT NULL,
    phone                   text,
    address                 text NOT NULL DEFAULT '',
    active                  boolean NOT NULL DEFAULT true,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE location_hours (
    tenant_id     uuid NOT NULL,
    location_id   text NOT NULL,
    weekday       smallint NOT NULL CHECK (weekday BETWEEN 0 AND 6),  -- 0 = Monday
    shift         smallint NOT NULL,
    open_minute   smallint NOT NULL CHECK (open_minute BETWEEN 0 AND 1439),
    close_minute  smallint NOT NULL CHECK (close_minute BETWEEN 0 AND 1440),
    PRIMARY KEY (tenant_id, location_id, weekday, shift),
    FOREIGN KEY (tenant_id, location_id) REFERENCES locations(tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE service_catalog (
    tenant_id    uuid NOT NULL,
    location_id  text NOT NULL,
    name         text NOT NULL,
    price_cents  bigint CHECK (price_cents >= 0),
    PRIMARY KEY (tenant_id, location_id, name),
    FOREIGN KEY (tenant_id, location_id) REFERENCES locations(tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE leads (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants(id),
    location_id          text NOT NULL,
    shopmonkey_order_id  text NOT NULL,
    order_number         text,
    state                text NOT NULL DEFAULT 'new' CHECK (state IN
                           ('new', 'contacted', 'engaged', 'qualified', 'appointment_set',
                            'completed', 'lost')),
    source               text NOT NULL,                 -- webhook | poll | test
    -- Ordering guard for out-of-order deliveries: meta.version, else updatedDate.
    order_version        bigint,
    order_updated_at     timestamptz,
    order_data           jsonb NOT NULL,
    customer_id          text,
    vehicle_id           text,
    first_name           text,
    last_name            text,
    phone                text,                          -- E.164
    email                text,                          -- lower-cased
    vehicle              jsonb NOT NULL DEFAULT '{}',
    services             jsonb NOT NULL DEFAULT '[]',
    enrichment_status    text NOT NULL DEFAULT 'pending' CHECK (enrichment_status IN
                           ('pending', 'partial', 'done')),
    enrichment_attempts  integer NOT NULL DEFAULT 0,
    enrich_after         timestamptz,
    -- Dedupe of people: a second order from someone with an open lead attaches to it.
    attached_to          uuid REFERENCES leads(id),
    last_error           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, shopmonkey_order_id)
);
CREATE INDEX leads_open_phone ON leads (tenant_id, phone, created_at)
    WHERE state NOT IN ('completed', 'lost') AND attached_to IS NULL;
CREATE INDEX leads_open_email ON leads (tenant_id, email, created_at)
    WHERE state NOT IN ('completed', 'lost') AND attached_to IS NULL;
CREATE INDEX leads_enrich_due ON leads (tenant_id, enrich_after)
    WHERE enrichment_status <> 'done';

-- The lead's timeline: every state change, with its cause.
CREATE TABLE lead_events (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    lead_id     uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    from_state  text,
    to_state    text NOT NULL,
    cause       text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_events_lead ON lead_events (tenant_id, lead_id, id);

-- One row per run of a periodic job (poll cycle, enrichment sweep...).
CREATE TABLE job_executions (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    job          text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'error', 'skipped')),
    counts       jsonb NOT NULL DEFAULT '{}',
    error        text
);
CREATE INDEX job_executions_recent ON job_executions (tenant_id, job, started_at DESC);

-- Leases: one holder per (tenant, name) at a time across daemons sharing a database.
CREATE TABLE leases (
    tenant_id   uuid NOT NULL,
    name        text NOT NULL,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Persistent cursors (the poller's "seen up to").
CREATE TABLE cursors (
    tenant_id   uuid NOT NULL,
    name        text NOT NULL,
    position    timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE chat_sessions (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    lead_id     uuid NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    token       text NOT NULL UNIQUE,          -- unguessable: 32 bytes of urandom, url-safe
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, lead_id)
);

CREATE TABLE chat_messages (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    lead_id      uuid REFERENCES leads(id) ON DELETE CASCADE,
    session_id   uuid REFERENCES chat_sessions(id) ON DELETE CASCADE,
    direction    text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    channel      text NOT NULL,
    address      text,                          -- the customer's phone/e-mail
    body         text NOT NULL,
    provider_id  text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX chat_messages_provider ON chat_messages (tenant_id, provider_id)
    WHERE provider_id IS NOT NULL;
CREATE INDEX chat_messages_lead ON chat_messages (tenant_id, lead_id, id);
