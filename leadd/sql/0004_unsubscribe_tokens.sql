-- The e-mail unsubscribe link gets a token of its own. It used to be the chat token, so anyone
-- holding the chat link from an SMS could unsubscribe the lead's e-mail address.
-- On chat_sessions because that row is created off the webhook's path (with enrichment), for
-- every lead that can be e-mailed. The value is 64 hex digits from two gen_random_uuid()
-- (PostgreSQL's strong random source): 244 random bits. A volatile default is evaluated per
-- row, so this fills every existing session with its own token, and every new one without a
-- change to the statement that creates sessions.
ALTER TABLE chat_sessions
    ADD COLUMN unsubscribe_token text NOT NULL
    DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
CREATE UNIQUE INDEX chat_sessions_unsubscribe_token ON chat_sessions (unsubscribe_token);
