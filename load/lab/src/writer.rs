//! The drills' own client: creates orders through the gateway at a steady
//! rate, each with a unique `requestId`, and remembers every answer. An
//! order is acknowledged when the gateway answered 200 with its id; that is
//! the promise the integrity check holds the platform to afterwards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http;

/// An order the platform acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    pub id: String,
    pub request_id: String,
    /// When the acknowledgement came (Unix milliseconds).
    pub at_ms: i64,
}

/// One request and what came back: `status` 0 when there was no answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When it was sent (Unix milliseconds).
    pub at_ms: i64,
    pub status: u16,
    pub took: Duration,
    pub body: String,
}

impl Attempt {
    /// When its answer (or failure) came, Unix milliseconds.
    pub fn end_ms(&self) -> i64 {
        self.at_ms + i64::try_from(self.took.as_millis()).unwrap_or(i64::MAX / 2)
    }
}

#[derive(Debug, Default)]
struct Log {
    acks: Vec<Ack>,
    attempts: Vec<Attempt>,
    request_ids: usize,
    /// Request ids that got no acknowledgement, to send again at the end.
    unanswered: Vec<String>,
}

pub struct Writer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    log: Arc<Mutex<Log>>,
}

/// Everything the writer saw.
#[derive(Debug, Default)]
pub struct Written {
    /// Every acknowledged order: during the run, then from the retries.
    pub acks: Vec<Ack>,
    /// The requests of the run (retries at the end not included).
    pub attempts: Vec<Attempt>,
    /// Distinct request ids sent: exactly this many orders must exist.
    pub request_ids: usize,
    /// Failed requests sent again at the end with their request id, as a
    /// client retries, until acknowledged; and those still not acknowledged.
    pub retried: usize,
    pub unresolved: Vec<String>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Writer {
    /// Starts creating `rate` orders a second as the user of `token`.
    pub fn start(gateway_port: u16, token: String, rate: u32, tag: &str) -> Writer {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Log::default()));
        let (stop_flag, shared, tag) = (stop.clone(), log.clone(), tag.to_owned());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut calls = Vec::new();
            let mut n = 0u64;
            while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let (token, log) = (token.clone(), shared.clone());
                let request_id = format!("{tag}-{}-{n}", now_ms());
                // Each order on its own task: a slow answer never lowers the rate.
                calls.push(tokio::spawn(create(gateway_port, token, request_id, log)));
            }
            for call in calls {
                let _ = call.await;
            }
        });
        Writer { stop, task, log }
    }

    /// Stops writing, then sends every unacknowledged request again with its
    /// request id (up to 30 s each) as a client would: whatever the platform
    /// did with the first try, the retry must end in exactly one order.
    pub async fn finish(self, gateway_port: u16, token: &str) -> Written {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
        let (mut acks, attempts, request_ids, unanswered) = {
            let mut log = self.log.lock().expect("writer log");
            (
                std::mem::take(&mut log.acks),
                std::mem::take(&mut log.attempts),
                log.request_ids,
                std::mem::take(&mut log.unanswered),
            )
        };
        let mut unresolved = Vec::new();
        for request_id in &unanswered {
            let mut acked = None;
            for _ in 0..60 {
                if let (200, Some(id), _) = send(gateway_port, token, request_id).await {
                    acked = Some(id);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            match acked {
                Some(id) => acks.push(Ack {
                    id,
                    request_id: request_id.clone(),
                    at_ms: now_ms(),
                }),
                None => unresolved.push(request_id.clone()),
            }
        }
        Written {
            acks,
            attempts,
            request_ids,
            retried: unanswered.len(),
            unresolved,
        }
    }
}

/// One order creation: status (0 without an answer), the order id when
/// acknowledged, and the answer's text.
async fn send(port: u16, token: &str, request_id: &str) -> (u16, Option<String>, String) {
    let body = format!(
        r#"{{"items":[{{"sku":"book-1","quantity":2,"unitPriceMinor":1250}}],"currency":"EUR","paymentMethod":"pm_card_visa","requestId":"{request_id}"}}"#
    );
    let reply = http::request(
        port,
        "POST",
        "/v1/orders",
        Some(token),
        &body,
        Duration::from_secs(30),
    )
    .await;
    let (status, text) = match reply {
        Ok(reply) => (reply.status, reply.body),
        Err(err) => (0, format!("{err:#}")),
    };
    let id = (status == 200)
        .then(|| serde_json::from_str::<serde_json::Value>(&text).ok())
        .flatten()
        .and_then(|v| v["id"].as_str().map(str::to_owned));
    (status, id, text)
}

async fn create(port: u16, token: String, request_id: String, log: Arc<Mutex<Log>>) {
    let (at_ms, started) = (now_ms(), Instant::now());
    let (status, id, text) = send(port, &token, &request_id).await;
    let took = started.elapsed();
    let mut log = log.lock().expect("writer log");
    log.request_ids += 1;
    log.attempts.push(Attempt {
        at_ms,
        status,
        took,
        body: text.chars().take(200).collect(),
    });
    match id {
        Some(id) => log.acks.push(Ack {
            id,
            request_id,
            at_ms: now_ms(),
        }),
        None => log.unanswered.push(request_id),
    }
}
