-- Tenancy enforced by the schema for everything that hangs off a lead, as the location keys
-- already are: a child row's foreign key names (tenant_id, lead_id), so no row can point at
-- another tenant's lead even if a query forgot its tenant filter. The single-column keys of
-- 0001/0002 are replaced; the referenced pairs get the unique constraints a composite key needs.

ALTER TABLE leads ADD CONSTRAINT leads_tenant_id_id UNIQUE (tenant_id, id);
ALTER TABLE touch_points ADD CONSTRAINT touch_points_tenant_id_id UNIQUE (tenant_id, id);
ALTER TABLE chat_sessions ADD CONSTRAINT chat_sessions_tenant_id_id UNIQUE (tenant_id, id);

ALTER TABLE leads
    DROP CONSTRAINT leads_attached_to_fkey,
    ADD CONSTRAINT leads_attached_to_fkey FOREIGN KEY (tenant_id, attached_to)
        REFERENCES leads (tenant_id, id);

ALTER TABLE lead_events
    DROP CONSTRAINT lead_events_lead_id_fkey,
    ADD CONSTRAINT lead_events_lead_fkey FOREIGN KEY (tenant_id, lead_id)
        REFERENCES leads (tenant_id, id) ON DELETE CASCADE;

ALTER TABLE chat_sessions
    DROP CONSTRAINT chat_sessions_lead_id_fkey,
    ADD CONSTRAINT chat_sessions_lead_fkey FOREIGN KEY (tenant_id, lead_id)
        REFERENCES leads (tenant_id, id) ON DELETE CASCADE;

-- lead_id and session_id may be NULL (an inbound SMS from an unknown number): a composite key
-- with a NULL column is not checked (MATCH SIMPLE), which is what such a row needs.
ALTER TABLE chat_messages
    DROP CONSTRAINT chat_messages_lead_id_fkey,
    ADD CONSTRAINT chat_messages_lead_fkey FOREIGN KEY (tenant_id, lead_id)
        REFERENCES leads (tenant_id, id) ON DELETE CASCADE,
    DROP CONSTRAINT chat_messages_session_id_fkey,
    ADD CONSTRAINT chat_messages_session_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES chat_sessions (tenant_id, id) ON DELETE CASCADE;

ALTER TABLE touch_points
    DROP CONSTRAINT touch_points_lead_id_fkey,
    ADD CONSTRAINT touch_points_lead_fkey FOREIGN KEY (tenant_id, lead_id)
        REFERENCES leads (tenant_id, id) ON DELETE CASCADE;

ALTER TABLE message_attempts
    DROP CONSTRAINT message_attempts_touch_point_id_fkey,
    ADD CONSTRAINT message_attempts_touch_point_fkey FOREIGN KEY (tenant_id, touch_point_id)
        REFERENCES touch_points (tenant_id, id) ON DELETE CASCADE;
