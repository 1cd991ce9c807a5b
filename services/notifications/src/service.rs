//! The gRPC face of notifications.

use platform_proto::notifications::v1::{
    ListNotificationsRequest, ListNotificationsResponse, Notification, SendRequest,
    StreamNotificationsRequest, notification_service_server::NotificationService,
};
use platform_runtime::caller::Authenticator;
use platform_runtime::paging::Page;
use platform_runtime::storage;
use platform_runtime::validate::checked;
use platform_runtime::{ids, time};
use tonic::{Request, Response, Status};

use crate::store::{NotificationRow, Store};
use crate::stream::{LiveStreams, Subscription};

/// The scope a service token needs to send.
pub const SEND_SCOPE: &str = "notifications:send";

#[derive(Debug, Clone)]
pub struct Notifications {
    store: Store,
    auth: Authenticator,
    live: LiveStreams,
}

impl Notifications {
    pub fn new(store: Store, auth: Authenticator, live: LiveStreams) -> Self {
        Self { store, auth, live }
    }
}

pub fn to_message(row: NotificationRow) -> Notification {
    Notification {
        id: row.id,
        user_id: row.user_id,
        kind: row.kind,
        subject: row.subject,
        body: row.body,
        created_at: Some(time::timestamp(row.created_at_ms)),
    }
}

#[tonic::async_trait]
impl NotificationService for Notifications {
    async fn send(&self, request: Request<SendRequest>) -> Result<Response<Notification>, Status> {
        self.auth.service(&request, SEND_SCOPE).await?;
        let req = request.into_inner();
        checked(&req)?;
        let row = NotificationRow {
            id: ids::new_id("ntf"),
            user_id: req.user_id.trim().to_owned(),
            kind: req.kind.trim().to_owned(),
            subject: req.subject.trim().to_owned(),
            body: req.body.trim().to_owned(),
            created_at_ms: time::now_ms(),
        };
        let key = req.idempotency_key.trim();
        let (stored, new) = self
            .store
            .insert(&row, key)
            .await
            .map_err(storage::status)?;
        if new {
            tracing::info!(notification_id = %stored.id, kind = %stored.kind, "sent");
            self.live.sent_to(&stored.user_id);
        }
        Ok(Response::new(to_message(stored)))
    }

    async fn list_notifications(
        &self,
        request: Request<ListNotificationsRequest>,
    ) -> Result<Response<ListNotificationsResponse>, Status> {
        let user = self.auth.user(&request).await?;
        let req = request.into_inner();
        checked(&req)?;
        let page = Page::parse(req.page_size, &req.page_token)?;
        let mut rows = self
            .store
            .page(&user.id, page.after.as_deref(), page.fetch_limit())
            .await
            .map_err(storage::status)?;
        let next_page_token = page.finish(&mut rows, |row| row.id.clone());
        Ok(Response::new(ListNotificationsResponse {
            notifications: rows.into_iter().map(to_message).collect(),
            next_page_token,
        }))
    }

    type StreamNotificationsStream = Subscription;

    async fn stream_notifications(
        &self,
        request: Request<StreamNotificationsRequest>,
    ) -> Result<Response<Self::StreamNotificationsStream>, Status> {
        let user = self.auth.user(&request).await?;
        Ok(Response::new(self.live.open(user.id)?))
    }
}
