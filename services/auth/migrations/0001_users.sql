-- Expand only. Both backends read this file.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    -- Normalized (trimmed, lower case) before it is stored.
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
