//! Password policy and hashing. Hashes are argon2id in PHC format, computed
//! on a fixed pool of threads (`pool.rs`), each with its own argon2 memory
//! allocated once, so a burst of logins waits or is refused instead of
//! growing the process past its memory limit. An unknown email still costs
//! one verification, so timing does not tell which emails have accounts.

use std::cell::RefCell;
use std::sync::LazyLock;

use argon2::password_hash::{self, Output, ParamsString, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tonic::Status;

use crate::common;
use crate::pool::{HashPool, PoolConfig, PoolStats, Refusal};

/// Checks the policy beyond what the request's rules say (its length, in
/// `RegisterRequest`'s annotations, checked by `validate`): not the email,
/// not a common password.
pub fn check_policy(password: &str, email: &str) -> Result<(), Status> {
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
    if common::is_common(password) {
        return Err(Status::invalid_argument(
            "this password is too common; choose another",
        ));
    }
    Ok(())
}

/// Hashes and verifies passwords on the fixed pool.
#[derive(Debug)]
pub struct Passwords {
    pool: HashPool,
}

fn refused(refusal: Refusal) -> Status {
    match refusal {
        Refusal::QueueFull | Refusal::WaitedTooLong => {
            Status::resource_exhausted("too many logins in progress; retry in a moment")
        }
        Refusal::Stopped => Status::unavailable("auth is stopping; retry in a moment"),
        Refusal::Panicked => Status::internal("cannot hash the password"),
    }
}

impl Passwords {
    pub fn new(config: PoolConfig) -> std::io::Result<Self> {
        Ok(Self {
            pool: HashPool::new(config)?,
        })
    }

    pub fn stats(&self) -> &PoolStats {
        self.pool.stats()
    }

    pub async fn hash(&self, password: String) -> Result<String, Status> {
        self.pool
            .run(move || hash_now(&password))
            .await
            .map_err(refused)?
            .map_err(|_| Status::internal("cannot hash the password"))
    }

    /// True when `password` matches `stored` (or, with no stored hash, after
    /// the same work as a real check).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Status> {
        self.pool
            .run(move || {
                let known = stored.is_some();
                let phc = stored.unwrap_or_else(|| DECOY.clone());
                verify_now(&password, &phc).unwrap_or(false) && known
            })
            .await
            .map_err(refused)
    }
}

thread_local! {
    /// This thread's argon2 memory, allocated once: a fresh 19 MiB per hash
    /// fragmented the heap and grew the process with every login.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Argon2 of `password` and `salt` into `out`, in this thread's memory.
fn compute(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> password_hash::Result<()> {
    MEMORY.with_borrow_mut(|blocks| {
        if blocks.len() < params.block_count() {
            blocks.resize(params.block_count(), Block::default());
        }
        Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut blocks[..])?)
    })
}

/// A new argon2id hash of `password` with the default parameters, in PHC format.
fn hash_now(password: &str) -> password_hash::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        compute(&argon2, &params, password.as_bytes(), salt_bytes, out)
    })?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC hash `phc`, with the hash's own parameters.
fn verify_now(password: &str, phc: &str) -> password_hash::Result<bool> {
    let parsed = PasswordHash::new(phc)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let computed = Output::init_with(expected.len(), |out| {
        compute(&argon2, &params, password.as_bytes(), salt_bytes, out)
    })?;
    // Output compares in constant time.
    Ok(computed == expected)
}

/// A hash of a random password, verified against when the email is unknown.
static DECOY: LazyLock<String> =
    LazyLock::new(|| hash_now("decoy password for unknown emails").unwrap_or_default());

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_agree_with_the_argon2_crate() {
        let ours = hash_now("correct horse battery").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("phc");
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery", &SaltString::generate(&mut OsRng))
            .expect("hash")
            .to_string();
        for (password, phc, want) in [
            ("correct horse battery", ours.as_str(), Ok(true)),
            ("correct horse battery", theirs.as_str(), Ok(true)),
            ("correct horse batterY", ours.as_str(), Ok(false)),
            ("correct horse batterY", theirs.as_str(), Ok(false)),
            ("anything", "not a hash", Err(())),
            (
                "anything",
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
                Ok(false),
            ),
        ] {
            assert_eq!(
                verify_now(password, phc).map_err(|_| ()),
                want,
                "{password} {phc}"
            );
        }
    }

    #[test]
    fn policy() {
        for (password, ok) in [
            ("correct horse", true),
            ("alice@example.com", false),
            ("alice123", true),
            ("alicealice", true),
            ("12345678", false),
            ("Password123", false),
        ] {
            assert_eq!(
                check_policy(password, "alice@example.com").is_ok(),
                ok,
                "{password}"
            );
        }
    }
}
