-- Staged enrichment (issue 11): 'contact' means the customer (phone, e-mail, name) is known
-- and the vehicle and services are still being fetched. The acknowledgement goes out on it;
-- steps that show the vehicle or services wait for 'done' (or 'partial').
ALTER TABLE leads DROP CONSTRAINT leads_enrichment_status_check;
ALTER TABLE leads ADD CONSTRAINT leads_enrichment_status_check
    CHECK (enrichment_status IN ('pending', 'contact', 'partial', 'done', 'failed'));
