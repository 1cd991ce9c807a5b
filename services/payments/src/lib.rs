//! The payment service: charges orders exactly once per idempotency key,
//! refunds never more than was charged, and shows users their payments.
#![forbid(unsafe_code)]

mod processor;
mod service;
mod store;

use platform_proto::payments::v1::{DESCRIPTOR_SET, payment_service_server::PaymentServiceServer};
use platform_runtime::caller::Authenticator;
use platform_runtime::storage::{Db, Migration};
use platform_runtime::tokens::Verifier;
use platform_runtime::{Env, Host, RunningService, ServiceConfig, StartError};

pub use service::Payments;

/// The blue port; green runs on 50153.
pub const PORT: u16 = 50053;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "payments",
        sqlite: include_str!("../migrations/0001_payments.sql"),
        postgres: include_str!("../migrations/0001_payments.sql"),
        contract: false,
    },
    Migration {
        version: 2,
        name: "refund_fingerprint",
        sqlite: include_str!("../migrations/0002_refund_fingerprint.sql"),
        postgres: include_str!("../migrations/0002_refund_fingerprint.sql"),
        contract: false,
    },
];

/// Opens the database, binds the listeners and starts serving.
pub async fn start(config: ServiceConfig, _env: Env) -> Result<RunningService, StartError> {
    let db = Db::open(&config.database, MIGRATIONS).await?;
    let auth = Authenticator::new(Verifier::remote(&config.tokens)?, &config.tokens);
    let host = Host::bind(config).await?.runs_on(db.schema());
    let service = PaymentServiceServer::new(Payments::new(db, auth));
    Ok(host.serve(service, DESCRIPTOR_SET).await?)
}
