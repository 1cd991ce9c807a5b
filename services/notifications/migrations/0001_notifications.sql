-- Expand only. Both backends read this file.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    -- A retried Send stores one notification, not two.
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX notifications_by_user ON notifications (user_id, id);
CREATE INDEX notifications_by_user_time ON notifications (user_id, created_at_ms);
