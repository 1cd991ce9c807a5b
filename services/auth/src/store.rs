//! The users table.

use platform_runtime::storage::Db;
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at_ms: i64,
}

fn user(row: &sqlx::any::AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        password_hash: row.try_get(2)?,
        created_at_ms: row.try_get(3)?,
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

    pub async fn insert(&self, row: &UserRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&row.id)
        .bind(&row.email)
        .bind(&row.password_hash)
        .bind(row.created_at_ms)
        .execute(self.db.pool())
        .await
        .map(|_| ())
    }

    pub async fn by_email(&self, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, email, password_hash, created_at_ms FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(user).transpose()
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
        let row =
            sqlx::query("SELECT id, email, password_hash, created_at_ms FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        row.as_ref().map(user).transpose()
    }
}
