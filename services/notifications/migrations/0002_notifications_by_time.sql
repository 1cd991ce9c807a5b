-- Expand only. Both backends read this file.
-- The stream poller reads every user's new rows by creation time.
CREATE INDEX notifications_by_time ON notifications (created_at_ms, id);
