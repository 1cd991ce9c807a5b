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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_bounded_per_user_and_per_process() {
    let backend = &backends()[0];
    let platform = Platform::start(backend).await;
    let (alice, token) = platform.user("alice@example.com").await;
    let service = platform.orders_token().await;
    let mut client = NotificationServiceClient::new(channel(platform.notifications.addr));
    let open = |client: &mut NotificationServiceClient<_>| {
        let mut client = client.clone();
        let token = token.clone();
        async move {
            client
                .stream_notifications(authed(StreamNotificationsRequest {}, &token))
                .await
                .map(tonic::Response::into_inner)
        }
    };

    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(open(&mut client).await.expect("within the limit"));
    }
    let refused = open(&mut client).await.expect_err("a sixth stream");
    assert_eq!(
        (refused.code(), refused.message()),
        (
            Code::ResourceExhausted,
            "at most 5 live streams per user; close one first"
        )
    );

    // One poller feeds them all: every open stream gets the row, once.
    client
        .send(authed(send(&alice, "to all", "fan-1"), &service))
        .await
        .expect("send");
    for stream in &mut streams {
        let got = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a notification within 10 s")
            .expect("stream ok")
            .expect("stream open");
        assert_eq!(got.subject, "to all");
    }

    // A client that leaves frees its place.
    drop(streams.pop());
    let mut reopened = None;
    for _ in 0..50 {
        match open(&mut client).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let mut reopened = reopened.expect("a place is free once a client left");
    client
        .send(authed(send(&alice, "after", "fan-2"), &service))
        .await
        .expect("send");
    for stream in streams.iter_mut().chain([&mut reopened]) {
        let got = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a notification within 10 s")
            .expect("stream ok")
            .expect("stream open");
        assert_eq!(got.subject, "after", "each row exactly once");
    }

    // A process holds at most MAX_STREAMS, whoever opens them.
    let db = platform
        .databases
        .iter()
        .find(|(s, _)| *s == "notifications")
        .expect("db")
        .1
        .clone();
    let small = testkit::start_service(
        "notifications",
        testkit::env(
            platform.dir.path(),
            &db,
            &[
                ("AUTH_ADDR", testkit::url(platform.auth.addr)),
                ("MAX_STREAMS", "2".into()),
            ],
        ),
    )
    .await;
    let (_, bob_token) = platform.user("bob@example.com").await;
    let mut small_client = NotificationServiceClient::new(channel(small.addr));
    let _first = open(&mut small_client).await.expect("first");
    let _second = small_client
        .stream_notifications(authed(StreamNotificationsRequest {}, &bob_token))
        .await
        .expect("second");
    let full = small_client
        .stream_notifications(authed(StreamNotificationsRequest {}, &bob_token))
        .await
        .expect_err("a third on this process");
    assert_eq!(
        (full.code(), full.message()),
        (
            Code::ResourceExhausted,
            "this server already holds its 2 live streams; retry later"
        )
    );
    drop((_first, _second));
    small.stop().await;
    drop((streams, reopened));
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_with_deadline_exceeded_when_its_deadline_passes() {
    let backend = &backends()[0];
    let platform = Platform::start(backend).await;
    let (alice, token) = platform.user("alice@example.com").await;
    let service = platform.orders_token().await;
    let mut client = NotificationServiceClient::new(channel(platform.notifications.addr));
    let mut request = authed(StreamNotificationsRequest {}, &token);
    request.set_timeout(Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let mut stream = client
        .stream_notifications(request)
        .await
        .expect("stream")
        .into_inner();
    client
        .send(authed(send(&alice, "before the deadline", "d1"), &service))
        .await
        .expect("send");
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the notification arrives")
        .expect("a message")
        .expect("not the end");
    assert_eq!(first.subject, "before the deadline");
    // Then nothing more arrives: the stream ends at its deadline, with the
    // code the gRPC spec gives it, rather than running on.
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends by itself");
    let status = ended.expect_err("ended by its deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(8),
        "ended after {elapsed:?}"
    );
    platform.stop().await;
}
