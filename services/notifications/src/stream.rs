//! Live notification streams. Blue and green (and every replica) share one
//! database but not memory, so a stream polls the table; a Send handled by
//! this process wakes its streams at once instead of waiting for the poll.
//! Rows are read with a look-back window and de-duplicated, so a row that
//! commits after a newer one is still delivered, exactly once.

use std::collections::HashMap;
use std::time::Duration;

use platform_proto::notifications::v1::Notification;
use platform_runtime::host::StreamsEnd;
use platform_runtime::storage;
use platform_runtime::time;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::service::to_message;
use crate::store::Store;

/// How far back each poll looks for rows that committed late.
const LOOK_BACK_MS: i64 = 5_000;

/// Feeds one user's stream until the client leaves or the server stops.
pub async fn feed(
    store: Store,
    user_id: String,
    mut wake: broadcast::Receiver<String>,
    poll: Duration,
    mut streams_end: StreamsEnd,
    tx: mpsc::Sender<Result<Notification, Status>>,
) {
    let started_ms = time::now_ms();
    let mut last_poll_ms = started_ms;
    let mut sent: HashMap<String, i64> = HashMap::new();
    loop {
        let floor = (last_poll_ms - LOOK_BACK_MS).max(started_ms);
        last_poll_ms = time::now_ms();
        match store.since(&user_id, floor).await {
            Ok(rows) => {
                for row in rows {
                    if sent.contains_key(&row.id) {
                        continue;
                    }
                    sent.insert(row.id.clone(), row.created_at_ms);
                    if tx.send(Ok(to_message(row))).await.is_err() {
                        return;
                    }
                }
            }
            Err(err) => {
                let _ = tx.send(Err(storage::status(err))).await;
                return;
            }
        }
        sent.retain(|_, created| *created >= floor);
        tokio::select! {
            _ = tx.closed() => return,
            _ = streams_end.wait() => {
                let _ = tx.send(Err(Status::unavailable("the server is shutting down; reconnect to continue"))).await;
                return;
            }
            _ = tokio::time::sleep(poll) => {}
            _ = woken(&mut wake, &user_id) => {}
        }
    }
}

async fn woken(wake: &mut broadcast::Receiver<String>, user_id: &str) {
    loop {
        match wake.recv().await {
            Ok(user) if user == user_id => return,
            Ok(_) => continue,
            // Missed some wake-ups: poll now to be safe.
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
