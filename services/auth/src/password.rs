//! Password policy and hashing. Hashes are argon2id in PHC format, computed
//! off the async threads. An unknown email still costs one verification, so
//! timing does not tell which emails have accounts.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use tonic::Status;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

/// Checks the policy: 8 to 128 characters, not blank, not the email.
pub fn check_policy(password: &str, email: &str) -> Result<(), Status> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(Status::invalid_argument(format!(
            "password must be at least {MIN_LEN} characters"
        )));
    }
    if len > MAX_LEN {
        return Err(Status::invalid_argument(format!(
            "password must be at most {MAX_LEN} characters"
        )));
    }
    if password.trim().is_empty() {
        return Err(Status::invalid_argument("password must not be blank"));
    }
    if password.eq_ignore_ascii_case(email)
        || email
            .split('@')
            .next()
            .is_some_and(|local| password.eq_ignore_ascii_case(local))
    {
        return Err(Status::invalid_argument(
            "password must not be the email address",
        ));
    }
    Ok(())
}

pub async fn hash(password: String) -> Result<String, Status> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| Status::internal("cannot hash the password"))
    })
    .await
    .map_err(|_| Status::internal("cannot hash the password"))?
}

/// A hash of a random password, verified against when the email is unknown.
static DECOY: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(b"decoy password for unknown emails", &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// True when `password` matches `stored` (or, with no stored hash, after the
/// same work as a real check).
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| DECOY.clone());
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::check_policy;

    #[test]
    fn policy() {
        for (password, ok) in [
            ("correct horse", true),
            ("short", false),
            ("        ", false),
            ("alice@example.com", false),
            ("alice123", true),
            ("alicealice", true),
            (&"x".repeat(129), false),
        ] {
            assert_eq!(
                check_policy(password, "alice@example.com").is_ok(),
                ok,
                "{password}"
            );
        }
    }
}
