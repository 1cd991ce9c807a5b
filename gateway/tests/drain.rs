//! A rolling restart of two gateways under load loses nothing: a stopping
//! gateway keeps serving through its drain delay, finishes what it accepted,
//! then closes; clients (as a load balancer would) go to the other one.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::Stack;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn gateway_at(stack: &Stack, addr: &str) -> gateway::RunningGateway {
    let auth = testkit::url(stack.platform.auth.addr);
    common::start_gateway(
        &[
            ("LISTEN_ADDR", addr),
            ("DRAIN_DELAY_MS", "300"),
            ("ROUTES_FILE", stack.routes_file.to_str().expect("utf-8")),
            ("AUTH_ADDR", &auth),
        ],
        &[platform_proto::PLATFORM_DESCRIPTOR_SET],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_two_gateways_loses_nothing() {
    let stack = Stack::start().await;
    let token = stack.login("drain@example.com").await;
    let mut a = gateway_at(&stack, "127.0.0.1:0").await;
    let mut b = gateway_at(&stack, "127.0.0.1:0").await;
    let addrs: [SocketAddr; 2] = [a.addr, b.addr];

    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed, redirected) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (running, ok, failed, redirected) = (
            running.clone(),
            ok.clone(),
            failed.clone(),
            redirected.clone(),
        );
        let bearer = format!("Bearer {token}");
        workers.push(tokio::spawn(async move {
            // Kept-alive connections, as a real client pool keeps them.
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let mut i = worker;
            while running.load(Ordering::Relaxed) {
                i += 1;
                let mut answered = false;
                for attempt in 0..2 {
                    let target = addrs[(i + attempt) % 2];
                    let request = http::Request::get(format!("http://{target}/v1/orders"))
                        .header("authorization", &bearer)
                        .body(Full::new(Bytes::new()))
                        .expect("request");
                    match client.request(request).await {
                        Ok(response) => {
                            let status = response.status();
                            let _ = response.into_body().collect().await;
                            if status == 200 {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failed.fetch_add(1, Ordering::Relaxed);
                                eprintln!("{target}: {status}");
                            }
                            answered = true;
                            break;
                        }
                        // Nothing was accepted there (the gateway is gone):
                        // a load balancer sends the request to the other one.
                        Err(err) if err.is_connect() => {
                            redirected.fetch_add(1, Ordering::Relaxed);
                        }
                        // An idle kept-alive connection closed by the server as
                        // the request went out: the request was never read, and
                        // HTTP/1.1 lets a client retry an idempotent one
                        // (RFC 9112, 9.3.1), as browsers do.
                        Err(err)
                            if std::error::Error::source(&err)
                                .and_then(|e| e.downcast_ref::<hyper::Error>())
                                .is_some_and(hyper::Error::is_incomplete_message) =>
                        {
                            redirected.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("{target}: {err:?}");
                            answered = true;
                            break;
                        }
                    }
                }
                assert!(answered, "neither gateway accepted the request");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // SIGTERM's path: readiness fails, serve for the drain delay, stop
        // accepting, finish in-flight requests, exit; then start again.
        if round == 0 {
            let addr = a.addr.to_string();
            a.stop().await;
            a = gateway_at(&stack, &addr).await;
        } else {
            let addr = b.addr.to_string();
            b.stop().await;
            b = gateway_at(&stack, &addr).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    running.store(false, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let (ok, failed, redirected) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        redirected.load(Ordering::Relaxed),
    );
    eprintln!(
        "{ok} answered, {failed} failed, {redirected} sent to the other gateway while one restarted"
    );
    assert!(ok > 100, "steady load ({ok})");
    assert_eq!(
        failed, 0,
        "a request accepted by a stopping gateway was lost"
    );
    a.stop().await;
    b.stop().await;
    stack.stop().await;
}
