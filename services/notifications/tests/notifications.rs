//! Notifications over a real socket, on every storage backend.

use std::time::Duration;

use platform_proto::notifications::v1::{
    ListNotificationsRequest, SendRequest, StreamNotificationsRequest,
    notification_service_client::NotificationServiceClient,
};
use testkit::{Platform, authed, backends, channel};
use tonic::Code;

fn send(user: &str, subject: &str, key: &str) -> SendRequest {
    SendRequest {
        user_id: user.into(),
        kind: "test".into(),
        subject: subject.into(),
        body: String::new(),
        idempotency_key: key.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_once_lists_and_streams_across_colors() {
    for backend in backends() {
        let platform = Platform::start(&backend).await;
        let (alice, token) = platform.user("alice@example.com").await;
        let service = platform.orders_token().await;
        let mut blue = NotificationServiceClient::new(channel(platform.notifications.addr));

        // Green: a second process on the same database, as in a release.
        let db = platform
            .databases
            .iter()
            .find(|(s, _)| *s == "notifications")
            .expect("db")
            .1
            .clone();
        let green_env = testkit::env(
            platform.dir.path(),
            &db,
            &[
                ("COLOR", "green".into()),
                ("AUTH_ADDR", testkit::url(platform.auth.addr)),
                ("STREAM_POLL_MS", "100".into()),
            ],
        );
        let green_service = testkit::start_service("notifications", green_env).await;
        let mut green = NotificationServiceClient::new(channel(green_service.addr));

        let user_denied = blue
            .send(authed(send(&alice, "x", "k0"), &token))
            .await
            .expect_err("users cannot send");
        assert_eq!(user_denied.code(), Code::PermissionDenied);

        let mut stream = green
            .stream_notifications(authed(StreamNotificationsRequest {}, &token))
            .await
            .expect("stream")
            .into_inner();
        // Sent to blue, twice with one key: green's stream gets it once.
        let first = blue
            .send(authed(send(&alice, "hello", "k1"), &service))
            .await
            .expect("send")
            .into_inner();
        let again = blue
            .send(authed(send(&alice, "hello", "k1"), &service))
            .await
            .expect("resend")
            .into_inner();
        assert_eq!(first.id, again.id, "{}", backend.name());
        blue.send(authed(send("usr_other", "not yours", "k2"), &service))
            .await
            .expect("send");
        blue.send(authed(send(&alice, "second", "k3"), &service))
            .await
            .expect("send");

        let mut seen = Vec::new();
        while seen.len() < 2 {
            let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("a notification within 10 s")
                .expect("stream ok")
                .expect("stream open");
            seen.push(next.subject);
        }
        assert_eq!(seen, ["hello", "second"], "{}", backend.name());

        let listed = blue
            .list_notifications(authed(
                ListNotificationsRequest {
                    page_size: 1,
                    page_token: String::new(),
                },
                &token,
            ))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(listed.notifications[0].subject, "second");
        let rest = blue
            .list_notifications(authed(
                ListNotificationsRequest {
                    page_size: 1,
                    page_token: listed.next_page_token,
                },
                &token,
            ))
            .await
            .expect("page 2")
            .into_inner();
        assert_eq!(rest.notifications[0].subject, "hello");
        assert!(rest.next_page_token.is_empty());

        // Stopping green ends its stream with UNAVAILABLE, not silently.
        green_service.stop().await;
        let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("stream ends");
        match end {
            Err(status) => assert_eq!(status.code(), Code::Unavailable),
            Ok(other) => panic!("expected UNAVAILABLE at shutdown, got {other:?}"),
        }
        platform.stop().await;
    }
}
