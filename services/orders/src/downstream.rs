//! Calls from orders to payments and notifications, with the service's own
//! token and a deadline on each call, each one a client span whose context
//! the callee continues.

use std::time::Duration;

use platform_proto::notifications::v1::{
    SendRequest, notification_service_client::NotificationServiceClient,
};
use platform_proto::payments::v1::{
    ChargeRequest, Payment, PaymentStatus, RefundRequest,
    payment_service_client::PaymentServiceClient,
};
use platform_runtime::caller::internal_request;
use platform_runtime::outgoing::Traced;
use platform_runtime::tokens::ServiceCredentials;
use platform_runtime::{ConfigError, Env};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::store::{OrderRow, OutboxRow};

/// How a charge attempt ended.
#[derive(Debug, Clone)]
pub enum Charged {
    Approved {
        payment_id: String,
    },
    Declined {
        payment_id: String,
        reason: String,
    },
    /// Payments refused the request itself; retrying cannot help.
    Rejected {
        reason: String,
    },
    /// Payments could not be reached or failed; the order stays pending and
    /// is charged again later with the same idempotency key.
    Retry(Status),
}

#[derive(Debug, Clone)]
pub struct Downstream {
    payments: PaymentServiceClient<Traced<Channel>>,
    notifications: NotificationServiceClient<Traced<Channel>>,
    credentials: ServiceCredentials,
    timeout: Duration,
}

/// A channel to `var`'s address, each call a client span.
fn channel(env: &Env, var: &str, default: &str) -> Result<Traced<Channel>, ConfigError> {
    let url = env.endpoint(var, default)?;
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| ConfigError::new(var, e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    let uri = endpoint.uri().clone();
    Ok(Traced::new(endpoint.connect_lazy(), &uri))
}

impl Downstream {
    pub fn from_env(env: &Env, credentials: ServiceCredentials) -> Result<Self, ConfigError> {
        Ok(Self {
            payments: PaymentServiceClient::new(channel(
                env,
                "PAYMENTS_ADDR",
                "http://127.0.0.1:50053",
            )?),
            notifications: NotificationServiceClient::new(channel(
                env,
                "NOTIFICATIONS_ADDR",
                "http://127.0.0.1:50054",
            )?),
            credentials,
            timeout: env.millis(
                "CALL_TIMEOUT_MS",
                Duration::from_secs(5),
                Duration::from_secs(60),
            )?,
        })
    }

    /// Charges the order; its id is the idempotency key, so a retry can never
    /// charge twice.
    pub async fn charge(&self, order: &OrderRow) -> Charged {
        let message = ChargeRequest {
            order_id: order.id.clone(),
            user_id: order.user_id.clone(),
            amount_minor: order.total_minor,
            currency: order.currency.clone(),
            payment_method: order.payment_method.clone(),
            idempotency_key: order.id.clone(),
        };
        let request = match internal_request(&self.credentials, message, self.timeout).await {
            Ok(r) => r,
            Err(status) => return Charged::Retry(status),
        };
        match self.payments.clone().charge(request).await {
            Ok(response) => outcome(response.into_inner()),
            Err(status)
                if matches!(
                    status.code(),
                    Code::InvalidArgument | Code::FailedPrecondition
                ) =>
            {
                Charged::Rejected {
                    reason: format!("payment rejected: {}", status.message()),
                }
            }
            Err(status) => Charged::Retry(status),
        }
    }

    /// Refunds what is left of the order's payment, once per order.
    pub async fn refund_all(&self, order: &OrderRow) -> Result<(), Status> {
        let message = RefundRequest {
            payment_id: order.payment_id.clone(),
            amount_minor: 0,
            idempotency_key: format!("cancel-{}", order.id),
            reason: "order cancelled".into(),
        };
        let request = internal_request(&self.credentials, message, self.timeout).await?;
        self.payments.clone().refund(request).await.map(|_| ())
    }

    /// Delivers one outbox row; its id makes the send idempotent.
    pub async fn notify(&self, row: &OutboxRow) -> Result<(), Status> {
        let message = SendRequest {
            user_id: row.user_id.clone(),
            kind: row.kind.clone(),
            subject: row.subject.clone(),
            body: row.body.clone(),
            idempotency_key: row.id.clone(),
        };
        let request = internal_request(&self.credentials, message, self.timeout).await?;
        self.notifications.clone().send(request).await.map(|_| ())
    }
}

fn outcome(payment: Payment) -> Charged {
    if payment.status == i32::from(PaymentStatus::Declined) {
        Charged::Declined {
            payment_id: payment.id,
            reason: payment.decline_reason,
        }
    } else {
        Charged::Approved {
            payment_id: payment.id,
        }
    }
}
