-- Expand only. Both backends read this file.
-- SHA-256 of the refund request an idempotency key first stood for (payment,
-- requested amount, reason), so reusing the key for a different refund is
-- refused. Rows written before this column have NULL and match any retry.
ALTER TABLE refunds ADD COLUMN request_fingerprint TEXT;
