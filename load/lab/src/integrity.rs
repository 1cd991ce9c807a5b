//! After a drill: every order the client saw acknowledged exists, ends in a
//! consistent state (paid, with exactly one approved payment of its total;
//! or payment failed, with none approved), and no request created two
//! orders. Read through the gateway as the orders' owner.

use std::time::Duration;

use anyhow::Context;

use crate::http;
use crate::writer::Ack;

#[derive(Debug, Default, Clone)]
pub struct Integrity {
    pub checked: usize,
    /// Acknowledged, but not found.
    pub lost: Vec<String>,
    /// Found in a state that does not match its payments.
    pub inconsistent: Vec<String>,
    /// Charged (approved) more than once.
    pub double_charged: Vec<String>,
    /// Orders beyond one per request id sent, or not acknowledged to anyone.
    pub duplicates: usize,
    /// Request ids that never got an order, even when sent again.
    pub unresolved: usize,
}

impl Integrity {
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.inconsistent.is_empty()
            && self.double_charged.is_empty()
            && self.duplicates == 0
            && self.unresolved == 0
    }

    pub fn summary(&self) -> String {
        let unresolved = match self.unresolved {
            0 => String::new(),
            n => format!(", {n} requests never acknowledged"),
        };
        format!(
            "{} acknowledged orders checked: {} lost, {} inconsistent, {} charged twice, {} duplicated{unresolved}",
            self.checked,
            self.lost.len(),
            self.inconsistent.len(),
            self.double_charged.len(),
            self.duplicates
        )
    }
}

/// A GET as a polite client: one user reading hundreds of orders meets the
/// gateway's rate limit, and waits (429 says when to come back).
async fn get_json(port: u16, path: &str, token: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    for _ in 0..60 {
        let reply = http::get(port, path, Some(token), Duration::from_secs(10)).await?;
        if reply.status == 429 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let value = serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null);
        return Ok((reply.status, value));
    }
    anyhow::bail!("GET {path}: still rate limited after 30 s")
}

/// [`check`] of everything a writer saw.
pub async fn of_written(
    port: u16,
    token: &str,
    written: &crate::writer::Written,
) -> anyhow::Result<Integrity> {
    check(
        port,
        token,
        &written.acks,
        written.request_ids,
        written.unresolved.len(),
    )
    .await
}

/// Checks every acknowledged order, and that the user has exactly one
/// order per request id sent (`request_ids`), each of them acknowledged.
pub async fn check(
    port: u16,
    token: &str,
    acks: &[Ack],
    request_ids: usize,
    unresolved: usize,
) -> anyhow::Result<Integrity> {
    let mut report = Integrity {
        checked: acks.len(),
        unresolved,
        ..Integrity::default()
    };
    for ack in acks {
        // An order acknowledged while payments was away may still be
        // PENDING: the platform finishes it by itself, give it time.
        let mut order = serde_json::Value::Null;
        for _ in 0..100 {
            let (status, value) = get_json(port, &format!("/v1/orders/{}", ack.id), token).await?;
            if status == 404 {
                break;
            }
            order = value;
            if order["status"] != "ORDER_STATUS_PENDING" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if order.is_null() {
            report.lost.push(ack.id.clone());
            continue;
        }
        let (status, payments) = get_json(
            port,
            &format!("/v1/orders/{}/payments?pageSize=100", ack.id),
            token,
        )
        .await
        .with_context(|| format!("payments of {}", ack.id))?;
        anyhow::ensure!(status == 200, "payments of {}: HTTP {status}", ack.id);
        let approved: Vec<&serde_json::Value> = payments["payments"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|p| p["status"] == "PAYMENT_STATUS_APPROVED")
                    .collect()
            })
            .unwrap_or_default();
        if approved.len() > 1 {
            report.double_charged.push(ack.id.clone());
        }
        let consistent = match order["status"].as_str() {
            Some("ORDER_STATUS_PAID") => {
                approved.len() == 1 && approved[0]["amountMinor"] == order["totalMinor"]
            }
            Some("ORDER_STATUS_PAYMENT_FAILED") => approved.is_empty(),
            _ => false,
        };
        if !consistent {
            report
                .inconsistent
                .push(format!("{} ({})", ack.id, order["status"]));
        }
    }
    // Every order of the user, page by page: exactly one per request id,
    // and each one acknowledged to the client (the failed tries were sent
    // again until acknowledged, so an order nobody was told about is a
    // duplicate).
    let acknowledged: std::collections::HashSet<&str> =
        acks.iter().map(|a| a.id.as_str()).collect();
    let (mut listed, mut strangers, mut page) = (0usize, 0usize, String::new());
    loop {
        let path = format!("/v1/orders?pageSize=100&pageToken={page}");
        let (status, value) = get_json(port, &path, token).await?;
        anyhow::ensure!(status == 200, "listing orders: HTTP {status}");
        for order in value["orders"].as_array().into_iter().flatten() {
            listed += 1;
            if !order["id"]
                .as_str()
                .is_some_and(|id| acknowledged.contains(id))
            {
                strangers += 1;
            }
        }
        match value["nextPageToken"].as_str() {
            Some(next) if !next.is_empty() => page = next.to_owned(),
            _ => break,
        }
    }
    report.duplicates = strangers.max(listed.saturating_sub(request_ids));
    Ok(report)
}
