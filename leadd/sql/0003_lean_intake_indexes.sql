-- Fewer index entries on the webhook's insert path (measured: PostgreSQL, not Python, bounds
-- intake throughput on a small host).
-- touch_points_lead duplicates the prefix of UNIQUE (lead_id, sequence, step_index).
DROP INDEX touch_points_lead;
-- A new lead has no phone/e-mail until enrichment: index only rows that have one, so the insert
-- writes no entry and the dedupe lookup (phone = $x implies NOT NULL) still uses the index.
DROP INDEX leads_open_phone;
DROP INDEX leads_open_email;
CREATE INDEX leads_open_phone ON leads (tenant_id, phone, created_at)
    WHERE phone IS NOT NULL AND state NOT IN ('completed', 'lost') AND attached_to IS NULL;
CREATE INDEX leads_open_email ON leads (tenant_id, email, created_at)
    WHERE email IS NOT NULL AND state NOT IN ('completed', 'lost') AND attached_to IS NULL;
