-- Expand only: tables and indexes. Both backends read this file.
CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    -- The database, not a check-then-insert, makes a key charge once.
    idempotency_key TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    status TEXT NOT NULL,
    decline_reason TEXT NOT NULL DEFAULT '',
    refunded_minor BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id, id);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    amount_minor BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX refunds_by_payment ON refunds (payment_id);
