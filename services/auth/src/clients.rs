//! Service identities. `AUTH_SERVICE_CLIENTS` lists `client_id=secret`
//! pairs (comma separated, from a Secret); the scopes of each client are the
//! platform's call graph, fixed here: only orders may charge and notify.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use platform_runtime::{ConfigError, Env};

/// What each known service may call.
const SCOPES: &[(&str, &str)] = &[("orders", "payments:write notifications:send")];

#[derive(Debug, Clone)]
pub struct ServiceClient {
    pub id: String,
    pub scope: &'static str,
    secret_digest: [u8; 32],
}

#[derive(Debug, Clone, Default)]
pub struct ServiceClients {
    clients: Vec<ServiceClient>,
}

impl ServiceClients {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let var = "AUTH_SERVICE_CLIENTS";
        let mut clients = Vec::new();
        for entry in env
            .string(var)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (id, secret) = entry.split_once('=').ok_or_else(|| {
                ConfigError::new(var, "expected client_id=secret pairs separated by commas")
            })?;
            let scope = SCOPES
                .iter()
                .find(|(known, _)| *known == id)
                .map(|(_, scope)| *scope)
                .ok_or_else(|| {
                    let known: Vec<&str> = SCOPES.iter().map(|(id, _)| *id).collect();
                    ConfigError::new(
                        var,
                        format!("unknown client {id:?}; known clients: {}", known.join(", ")),
                    )
                })?;
            if secret.len() < 16 {
                return Err(ConfigError::new(
                    var,
                    format!("the secret of {id} must be at least 16 characters"),
                ));
            }
            clients.push(ServiceClient {
                id: id.to_owned(),
                scope,
                secret_digest: Sha256::digest(secret.as_bytes()).into(),
            });
        }
        Ok(Self { clients })
    }

    /// The client whose id and secret match; secrets compare in constant time.
    pub fn authenticate(&self, id: &str, secret: &str) -> Option<&ServiceClient> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.clients
            .iter()
            .find(|c| c.id == id && bool::from(c.secret_digest.ct_eq(&digest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_authenticates() {
        let env = Env::from_pairs([("AUTH_SERVICE_CLIENTS", "orders=0123456789abcdef0123")]);
        let clients = ServiceClients::from_env(&env).expect("valid");
        assert_eq!(
            clients
                .authenticate("orders", "0123456789abcdef0123")
                .map(|c| c.scope),
            Some(SCOPES[0].1)
        );
        assert!(clients.authenticate("orders", "wrong").is_none());
        for (value, want) in [
            (
                "orders",
                "expected client_id=secret pairs separated by commas",
            ),
            (
                "billing=0123456789abcdef",
                "unknown client \"billing\"; known clients: orders",
            ),
            (
                "orders=short",
                "the secret of orders must be at least 16 characters",
            ),
        ] {
            let err = ServiceClients::from_env(&Env::from_pairs([("AUTH_SERVICE_CLIENTS", value)]))
                .expect_err(value);
            assert_eq!(err.message, want);
        }
    }
}
