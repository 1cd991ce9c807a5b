//! The notifications table.

use platform_runtime::storage::Db;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub created_at_ms: i64,
}

const COLUMNS: &str = "id, user_id, kind, subject, body, created_at_ms";

fn notification(row: &sqlx::any::AnyRow) -> Result<NotificationRow, sqlx::Error> {
    Ok(NotificationRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        kind: row.try_get(2)?,
        subject: row.try_get(3)?,
        body: row.try_get(4)?,
        created_at_ms: row.try_get(5)?,
    })
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Stores the notification unless its key exists; returns the stored row
    /// and whether it is new.
    pub async fn insert(
        &self,
        row: &NotificationRow,
        key: &str,
    ) -> Result<(NotificationRow, bool), sqlx::Error> {
        let (row, key) = (std::sync::Arc::new(row.clone()), key.to_owned());
        self.db
            .write(move |conn| {
                let (row, key) = (std::sync::Arc::clone(&row), key.clone());
                Box::pin(async move {
                    // The new row comes back from the insert itself; only a
                    // retry (the key taken) costs a second query.
                    let inserted = sqlx::query(&format!(
                        "INSERT INTO notifications (id, idempotency_key, user_id, kind, subject, body, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
                    ))
                    .bind(&row.id)
                    .bind(&key)
                    .bind(&row.user_id)
                    .bind(&row.kind)
                    .bind(&row.subject)
                    .bind(&row.body)
                    .bind(row.created_at_ms)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(stored) = inserted {
                        return Ok((notification(&stored)?, true));
                    }
                    let stored = sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM notifications WHERE idempotency_key = $1"
                    ))
                    .bind(&key)
                    .fetch_one(&mut *conn)
                    .await?;
                    Ok((notification(&stored)?, false))
                })
            })
            .await
    }

    /// A user's notifications, newest first, before the cursor `before`.
    pub async fn page(
        &self,
        user_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND ($2 = '' OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(user_id)
        .bind(before.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(notification).collect()
    }

    /// Every user's notifications created at or after `since_ms`, oldest
    /// first, read in pages so one poll never holds a huge result.
    pub async fn since(&self, since_ms: i64) -> Result<Vec<NotificationRow>, sqlx::Error> {
        const PAGE: i64 = 500;
        let mut out: Vec<NotificationRow> = Vec::new();
        let (mut after_ms, mut after_id) = (since_ms, String::new());
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM notifications \
                 WHERE (created_at_ms, id) > ($1, $2) \
                 ORDER BY created_at_ms, id LIMIT $3"
            ))
            .bind(after_ms)
            .bind(&after_id)
            .bind(PAGE)
            .fetch_all(self.db.pool())
            .await?;
            let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= PAGE;
            for row in &rows {
                out.push(notification(row)?);
            }
            match out.last() {
                Some(last) if full => (after_ms, after_id) = (last.created_at_ms, last.id.clone()),
                _ => return Ok(out),
            }
        }
    }
}
