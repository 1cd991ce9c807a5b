//! The gRPC face of auth.

use platform_proto::auth::v1::{
    GetJwksRequest, GetMeRequest, IssueServiceTokenRequest, Jwks, LoginRequest, LoginResponse,
    RegisterRequest, RegisterResponse, User, auth_service_server::AuthService,
};
use platform_runtime::caller::Authenticator;
use platform_runtime::config::TokenConfig;
use platform_runtime::metrics::Metrics;
use platform_runtime::storage::{self, Db};
use platform_runtime::tokens::{Audience, Claims, KeyRing, Verifier};
use platform_runtime::validate::checked;
use platform_runtime::{ids, time};
use tonic::{Request, Response, Status};

use crate::AuthSettings;
use crate::password::{self, Passwords};
use crate::store::{Store, UserRow};
use crate::throttle::Attempts;

#[derive(Debug)]
pub struct Auth {
    store: Store,
    keys: KeyRing,
    tokens: TokenConfig,
    settings: AuthSettings,
    authenticator: Authenticator,
    passwords: Passwords,
    attempts: Attempts,
}

impl Auth {
    pub fn new(
        db: Db,
        keys: KeyRing,
        tokens: &TokenConfig,
        settings: AuthSettings,
        passwords: Passwords,
    ) -> Self {
        let verifier = Verifier::local(&tokens.issuer, keys.public_keys());
        Self {
            store: Store::new(db),
            authenticator: Authenticator::new(verifier, tokens),
            keys,
            tokens: tokens.clone(),
            attempts: Attempts::new(settings.throttle),
            settings,
            passwords,
        }
    }

    /// Adds the hash pool's and the throttle's figures to `/metrics`.
    pub fn register_metrics(&self, metrics: &Metrics) {
        let stats = self.passwords.stats();
        metrics.register(
            "auth_password_hashes_in_flight",
            "Password hashes and verifications being computed now",
            stats.in_flight.clone(),
        );
        metrics.register(
            "auth_password_hashes_in_flight_max",
            "The most password hashes ever computed at once by this process",
            stats.in_flight_max.clone(),
        );
        metrics.register(
            "auth_password_hashes_queued",
            "Password hashes waiting for a thread of the hash pool",
            stats.queued.clone(),
        );
        metrics.register(
            "auth_password_hashes",
            "Password hashes and verifications computed",
            stats.completed.clone(),
        );
        metrics.register(
            "auth_password_hashes_refused",
            "Password hashes refused: the queue was full or the wait too long",
            stats.refused.clone(),
        );
        metrics.register(
            "auth_account_attempts_refused",
            "Logins and registers refused by the per-account throttle, without a hash",
            self.attempts.refused().clone(),
        );
    }

    fn issue(
        &self,
        subject: String,
        audience: &str,
        ttl: std::time::Duration,
        email: Option<String>,
        scope: Option<String>,
    ) -> Result<LoginResponse, Status> {
        let now = time::now_ms() / 1000;
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(900);
        let claims = Claims {
            iss: self.tokens.issuer.clone(),
            sub: subject,
            aud: Audience::One(audience.to_owned()),
            exp: now + ttl_secs,
            nbf: now,
            iat: now,
            jti: ids::new_id("jti"),
            email,
            scope,
        };
        let access_token = self
            .keys
            .sign(&claims)
            .map_err(|_| Status::internal("cannot sign the token"))?;
        Ok(LoginResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: i32::try_from(ttl_secs).unwrap_or(i32::MAX),
        })
    }
}

/// Trims and lower-cases an email, and checks its shape.
pub fn normalize_email(raw: &str) -> Result<String, Status> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err(Status::invalid_argument("email is required"));
    }
    if !platform_proto::rules::is_email(&email) {
        return Err(Status::invalid_argument(format!(
            "email {raw:?} is not a valid address"
        )));
    }
    Ok(email)
}

fn user_message(row: &UserRow) -> User {
    User {
        id: row.id.clone(),
        email: row.email.clone(),
        created_at: Some(time::timestamp(row.created_at_ms)),
    }
}

#[tonic::async_trait]
impl AuthService for Auth {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let req = request.into_inner();
        checked(&req)?;
        let email = normalize_email(&req.email)?;
        password::check_policy(&req.password, &email)?;
        // A taken email counts as a failed attempt on that account, so
        // finding out which emails have accounts is as slow as guessing.
        let attempt = self.attempts.begin(&email)?;
        // Hashed before the insert tells whether the email is taken, so both
        // answers take the same time.
        let row = UserRow {
            id: ids::new_id("usr"),
            password_hash: self.passwords.hash(req.password).await?,
            email,
            created_at_ms: time::now_ms(),
        };
        match self.store.insert(&row).await {
            Ok(()) => {
                attempt.succeeded();
                tracing::info!(user_id = %row.id, "registered");
                Ok(Response::new(RegisterResponse {
                    user: Some(user_message(&row)),
                }))
            }
            Err(err) if storage::is_unique_violation(&err) => {
                attempt.failed();
                Err(Status::already_exists(
                    "an account with this email already exists",
                ))
            }
            Err(err) => Err(storage::status(err)),
        }
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let req = request.into_inner();
        let refused = || Status::unauthenticated("wrong email or password");
        let email = normalize_email(&req.email).map_err(|_| refused())?;
        // Before any hash: a locked account costs nothing to refuse.
        let attempt = self.attempts.begin(&email)?;
        let user = self.store.by_email(&email).await.map_err(storage::status)?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let matches = self.passwords.verify(req.password, stored).await?;
        let Some(user) = user.filter(|_| matches) else {
            attempt.failed();
            return Err(refused());
        };
        attempt.succeeded();
        let response = self.issue(
            user.id.clone(),
            &self.tokens.audience,
            self.settings.user_token_ttl,
            Some(user.email),
            None,
        )?;
        tracing::info!(user_id = %user.id, "logged in");
        Ok(Response::new(response))
    }

    async fn get_me(&self, request: Request<GetMeRequest>) -> Result<Response<User>, Status> {
        let caller = self.authenticator.user(&request).await?;
        match self
            .store
            .by_id(&caller.id)
            .await
            .map_err(storage::status)?
        {
            Some(row) => Ok(Response::new(user_message(&row))),
            None => Err(Status::not_found(
                "the account of this token no longer exists",
            )),
        }
    }

    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(Jwks {
            keys: self.keys.jwks(),
        }))
    }

    async fn issue_service_token(
        &self,
        request: Request<IssueServiceTokenRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let req = request.into_inner();
        let client = self
            .settings
            .clients
            .authenticate(&req.client_id, &req.client_secret)
            .ok_or_else(|| Status::unauthenticated("invalid client credentials"))?;
        let response = self.issue(
            format!("service:{}", client.id),
            &self.tokens.internal_audience,
            self.settings.service_token_ttl,
            None,
            Some(client.scope.to_owned()),
        )?;
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn emails_are_normalized_and_checked() {
        for (raw, want) in [
            ("  Alice@Example.COM ", Some("alice@example.com")),
            ("bob@example.org", Some("bob@example.org")),
            ("", None),
            ("no-at-sign", None),
            ("@example.com", None),
            ("a@b", None),
            ("a@@b.com", None),
            ("a b@c.com", None),
        ] {
            assert_eq!(normalize_email(raw).ok().as_deref(), want, "{raw:?}");
        }
    }
}
