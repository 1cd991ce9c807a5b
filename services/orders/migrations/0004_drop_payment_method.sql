-- Contract: payment_method, renamed payment_token by migration 3, goes.
-- Release 0.3.0 reads payment_token only; 0.1.0 and 0.2.0 read
-- payment_method, so this step waits until none of them runs: services do
-- not apply it at start, `platformctl migrate orders --contract` does, after
-- checking that every orders endpoint runs a release that knows it (and
-- 0.2.0 then refuses to start on it). Rows the backfill has not reached yet
-- are copied first. Both backends read this file.
UPDATE orders SET payment_token = payment_method WHERE payment_token IS NULL;
-- squawk-ignore ban-drop-column
ALTER TABLE orders DROP COLUMN payment_method;
