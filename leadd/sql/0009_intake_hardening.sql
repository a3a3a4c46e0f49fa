-- Intake hardening (issue 7: defects 2, 4 and 9).

-- A lead whose enrichment keeps failing (data PostgreSQL refuses, a bug its order triggers)
-- is retried with backoff, then given up as 'failed' with the reason in last_error, instead
-- of crashing the loop that enriches every lead. Failures are counted apart from attempts
-- (a lead waiting for its customer to be linked is not failing).
ALTER TABLE leads DROP CONSTRAINT leads_enrichment_status_check;
ALTER TABLE leads ADD CONSTRAINT leads_enrichment_status_check
    CHECK (enrichment_status IN ('pending', 'partial', 'done', 'failed'));
ALTER TABLE leads ADD COLUMN enrichment_failures integer NOT NULL DEFAULT 0;
DROP INDEX leads_enrich_due;
CREATE INDEX leads_enrich_due ON leads (tenant_id, enrich_after)
    WHERE enrichment_status NOT IN ('done', 'failed');

-- Signed webhook deliveries, remembered until their signature expires (Standard Webhooks:
-- webhook-timestamp + tolerance; legacy signatures carry no timestamp: a bounded time), so a
-- replay is answered `duplicate` and changes nothing. Written in the transaction that stores
-- the delivery, pruned by the poll loop.
CREATE TABLE webhook_deliveries (
    tenant_id   uuid NOT NULL,
    digest      bytea NOT NULL,          -- sha256 of the webhook-id, or of a legacy body
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, digest)
);
CREATE INDEX webhook_deliveries_expiry ON webhook_deliveries (tenant_id, expires_at);

-- Orders refused at intake, by webhook (422: the database refused it) or by the poller
-- (invalid or refused; skipped so the cursor can move on): what an operator needs to find
-- them in Shopmonkey, never the order's contents.
CREATE TABLE rejected_orders (
    tenant_id   uuid NOT NULL,
    source      text NOT NULL,           -- webhook | poll
    order_ref   text NOT NULL,           -- the order id as received, printable and bounded
    reason      text NOT NULL,
    seen        integer NOT NULL DEFAULT 1,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source, order_ref)
);
