-- The send gate and bounded reconciliation (issue 7).

-- When the row passed its gate: opt-out, lead state, time windows and cap decided after every
-- wait, in the statement that stores what is sent, right before the provider call. A STOP
-- cancels rows that are `sending` but not gated (still waiting for a slot); a gated row is
-- in flight and is recorded as what happened to it. Reset by every claim.
ALTER TABLE touch_points ADD COLUMN gated_at timestamptz;
-- Rows in flight during the upgrade already stored what they send: they passed the old gate.
UPDATE touch_points SET gated_at = updated_at WHERE state = 'sending' AND recipient IS NOT NULL;

-- Lookups at the provider of a send left in doubt (crash, timeout, 5xx), counted so that a
-- lookup that keeps failing ends: the row becomes `unknown` (maybe sent, never resent
-- blindly), which the lead, a metric and the log show. Reset by every claim.
ALTER TABLE touch_points ADD COLUMN reconcile_attempts integer NOT NULL DEFAULT 0;

ALTER TABLE touch_points DROP CONSTRAINT touch_points_state_check;
ALTER TABLE touch_points ADD CONSTRAINT touch_points_state_check CHECK (state IN
    ('scheduled', 'sending', 'sent', 'failed', 'cancelled', 'skipped', 'unknown'));
-- The unconfirmed-sends gauge counts these every cycle; there should be none.
CREATE INDEX touch_points_unknown ON touch_points (tenant_id) WHERE state = 'unknown';
