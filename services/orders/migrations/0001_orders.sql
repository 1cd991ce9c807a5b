-- Expand only. Both backends read this file.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    -- The client's retry key; NULL when none was sent (NULLs never collide).
    request_id TEXT,
    status TEXT NOT NULL,
    total_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    payment_id TEXT NOT NULL DEFAULT '',
    failure_reason TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX orders_by_request ON orders (user_id, request_id);
CREATE INDEX orders_by_user ON orders (user_id, id);
CREATE INDEX orders_by_status ON orders (status, updated_at_ms);

CREATE TABLE order_items (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line BIGINT NOT NULL,
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_price_minor BIGINT NOT NULL,
    PRIMARY KEY (order_id, line)
);

-- Notifications to deliver, written in the same transaction as the status
-- change that causes them, so none is lost when notifications is down.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    sent_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (sent_at_ms, next_attempt_at_ms);
