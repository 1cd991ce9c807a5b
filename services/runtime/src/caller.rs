//! Who is calling: every service checks the bearer token itself (defence in
//! depth; services are reachable directly with grpcurl). End users carry a
//! token with the user audience; services carry one with the internal
//! audience and a scope per internal RPC, so a user token can never call
//! `Charge` or `Send`, even when it reaches the service directly.

use tonic::{Request, Status};

use crate::config::TokenConfig;
use crate::tokens::{Claims, TokenError, Verifier};

/// An authenticated end user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
}

/// Either kind of caller, for reads that users and services both make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(User),
    Service(String),
}

#[derive(Debug, Clone)]
pub struct Authenticator {
    verifier: Verifier,
    audience: String,
    internal_audience: String,
}

impl Authenticator {
    pub fn new(verifier: Verifier, config: &TokenConfig) -> Self {
        Self {
            verifier,
            audience: config.audience.clone(),
            internal_audience: config.internal_audience.clone(),
        }
    }

    /// The end user behind the call's token.
    pub async fn user<T>(&self, request: &Request<T>) -> Result<User, Status> {
        let token = bearer(request)?;
        let claims = self
            .verifier
            .verify(token, &self.audience)
            .await
            .map_err(refused)?;
        Ok(User {
            id: claims.sub,
            email: claims.email.unwrap_or_default(),
        })
    }

    /// The service behind the call's token, which must grant `scope`.
    pub async fn service<T>(&self, request: &Request<T>, scope: &str) -> Result<String, Status> {
        let token = bearer(request)?;
        let claims = self
            .verifier
            .verify(token, &self.internal_audience)
            .await
            .map_err(|err| match err {
                TokenError::Audience => {
                    Status::permission_denied("this method is internal: it needs a service token")
                }
                other => refused(other),
            })?;
        if !claims.has_scope(scope) {
            return Err(Status::permission_denied(format!(
                "the service token of {} lacks the scope {scope}",
                claims.sub
            )));
        }
        Ok(claims.sub)
    }

    /// A user, or a service granting `scope`.
    pub async fn user_or_service<T>(
        &self,
        request: &Request<T>,
        scope: &str,
    ) -> Result<Caller, Status> {
        let token = bearer(request)?;
        match self.verifier.verify(token, &self.audience).await {
            Ok(claims) => Ok(Caller::User(user_of(claims))),
            Err(TokenError::Audience) => self.service(request, scope).await.map(Caller::Service),
            Err(other) => Err(refused(other)),
        }
    }
}

fn user_of(claims: Claims) -> User {
    User {
        id: claims.sub,
        email: claims.email.unwrap_or_default(),
    }
}

fn bearer<T>(request: &Request<T>) -> Result<&str, Status> {
    let value = request
        .metadata()
        .get("authorization")
        .ok_or_else(|| {
            Status::unauthenticated("missing bearer token: send authorization: Bearer <token>")
        })?
        .to_str()
        .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        Status::unauthenticated("malformed authorization header: expected Bearer <token>")
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Status::unauthenticated(
            "malformed authorization header: expected Bearer <token>",
        ));
    }
    Ok(token.trim())
}

fn refused(err: TokenError) -> Status {
    match err {
        TokenError::KeysUnavailable => Status::unavailable(err.to_string()),
        other => Status::unauthenticated(other.to_string()),
    }
}

/// Adds `authorization: Bearer <token>` to an outgoing request.
pub fn with_bearer<T>(mut request: Request<T>, token: &str) -> Result<Request<T>, Status> {
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| Status::internal("token is not a valid header value"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// An internal call: the service's own token and a deadline, so a slow
/// dependency never holds a request forever (the trace context is added by
/// the client span of `outgoing::Traced`).
pub async fn internal_request<T>(
    credentials: &crate::tokens::ServiceCredentials,
    message: T,
    timeout: std::time::Duration,
) -> Result<Request<T>, Status> {
    let token = credentials.token().await?;
    let mut request = with_bearer(Request::new(message), &token)?;
    request.set_timeout(timeout);
    Ok(request)
}
