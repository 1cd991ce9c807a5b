-- Expand only. Both backends read this file.
-- SHA-256 of the order a request_id first created (items, currency, payment
-- method), so reusing the request_id for a different order is refused. Rows
-- written before this column have NULL and are treated as matching any retry.
ALTER TABLE orders ADD COLUMN request_fingerprint TEXT;
