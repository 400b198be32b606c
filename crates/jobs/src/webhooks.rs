//! Webhook deliveries: the fan-out from `job_events` and the sender, run by `serve` on their
//! own task — a slow or dead endpoint delays only its own deliveries, never a job.
//!
//! Every delivery is a `POST` of the event's JSON with
//! `Photo-Api-Webhook-Id` (the delivery id, stable across retries),
//! `Photo-Api-Webhook-Timestamp` (Unix seconds of this attempt) and
//! `Photo-Api-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
//! A 2xx answer delivers it; anything else (or no answer in time) is retried with exponential
//! backoff up to `max_attempts`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use photo_db::{DeliveryOutcome, DueDelivery, Repo};
use sha2::Sha256;

/// Sender settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// First retry delay; doubled per attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Attempts before a delivery is given up (`failed`).
    pub max_attempts: u32,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// How often the loop looks for work when idle.
    pub poll: Duration,
    /// Deliveries sent at once.
    pub concurrency: usize,
    /// Blocks a webhook URL may reach although they are not public (as for `source_url`).
    pub allow: Vec<crate::fetch::Cidr>,
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any size"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before attempt `attempts + 1`: `base·2^(attempts-1)`, capped.
pub fn retry_delay(attempts: u32, cfg: &WebhookConfig) -> Duration {
    cfg.retry_base
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(cfg.retry_max)
}

async fn send(d: &DueDelivery, cfg: &WebhookConfig) -> DeliveryOutcome {
    // The same SSRF rules as source URLs, on the resolved address, pinned for the request: a
    // webhook can never be pointed at loopback, private or metadata addresses.
    let (host, addr) = match crate::fetch::webhook_address(&d.url, &cfg.allow).await {
        Ok(a) => a,
        Err(e) => {
            return DeliveryOutcome::Failed {
                status_code: None,
                error: e,
                retry_at: None,
            };
        }
    };
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, addr)
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return DeliveryOutcome::Failed {
                status_code: None,
                error: format!("building the HTTP client failed: {e}"),
                retry_at: Some(Utc::now()),
            };
        }
    };
    let now = Utc::now();
    let ts = now.timestamp();
    let body = d.delivery.payload.clone();
    let res = http
        .post(&d.url)
        .timeout(cfg.timeout)
        .header("content-type", "application/json")
        .header("user-agent", "photo-api-webhooks")
        .header("photo-api-webhook-id", &d.delivery.delivery_id)
        .header("photo-api-webhook-timestamp", ts.to_string())
        .header(
            "photo-api-webhook-signature",
            signature(&d.secret, ts, &body),
        )
        .body(body)
        .send()
        .await;
    let attempts = d.delivery.attempts + 1;
    let retry_at = |now: DateTime<Utc>| {
        (attempts < cfg.max_attempts).then(|| {
            now + chrono::Duration::from_std(retry_delay(attempts, cfg)).unwrap_or_default()
        })
    };
    match res {
        Ok(r) if r.status().is_success() => DeliveryOutcome::Delivered {
            status_code: r.status().as_u16(),
        },
        Ok(r) => DeliveryOutcome::Failed {
            status_code: Some(r.status().as_u16()),
            error: format!("the endpoint answered {}", r.status()),
            retry_at: retry_at(Utc::now()),
        },
        Err(e) => DeliveryOutcome::Failed {
            status_code: None,
            error: if e.is_timeout() {
                format!("no answer within {:?}", cfg.timeout)
            } else {
                format!("the request failed: {e}")
            },
            retry_at: retry_at(Utc::now()),
        },
    }
}

/// One round: fan out new events, then send the deliveries due now. Returns how many were
/// attempted.
pub async fn deliver_once(
    repo: &dyn Repo,
    cfg: &WebhookConfig,
) -> Result<usize, photo_db::DbError> {
    while repo.webhook_fanout(Utc::now(), 500).await? > 0 {}
    // A claim is held for the attempt's time limit plus a margin; a sender that dies
    // mid-attempt leaves the delivery to be retried after it.
    let lease = chrono::Duration::from_std(cfg.timeout * 2).unwrap_or_default();
    let due = repo
        .claim_deliveries(Utc::now(), lease, (cfg.concurrency * 4) as u32)
        .await?;
    let n = due.len();
    let results: Vec<_> = futures_util::stream::iter(due)
        .map(|d| async move {
            let outcome = send(&d, cfg).await;
            (d, outcome)
        })
        .buffer_unordered(cfg.concurrency.max(1))
        .collect()
        .await;
    for (d, outcome) in results {
        photo_core::metrics::metrics()
            .webhook_deliveries
            .inc([match &outcome {
                DeliveryOutcome::Delivered { .. } => "delivered",
                DeliveryOutcome::Failed {
                    retry_at: Some(_), ..
                } => "failed",
                DeliveryOutcome::Failed { retry_at: None, .. } => "gave_up",
            }]);
        if let DeliveryOutcome::Failed { error, .. } = &outcome {
            tracing::info!(delivery_id = %d.delivery.delivery_id, attempt = d.delivery.attempts + 1, %error, "webhook delivery failed");
        }
        repo.record_delivery(&d.delivery.delivery_id, &outcome, Utc::now())
            .await?;
    }
    Ok(n)
}

/// Runs [`deliver_once`] until `stop` turns true.
pub async fn delivery_loop(
    repo: std::sync::Arc<dyn Repo>,
    cfg: WebhookConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let idle = match deliver_once(repo.as_ref(), &cfg).await {
            Ok(n) => n == 0,
            Err(e) => {
                tracing::warn!(error = %e, "webhook round failed; retrying");
                true
            }
        };
        if idle {
            tokio::select! {
                _ = tokio::time::sleep(cfg.poll) => {}
                _ = stop.changed() => return,
            }
        } else if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231-style check against an independently computed value (Python's hmac).
        assert_eq!(
            signature("secret", 1_700_000_000, "{\"a\":1}"),
            "v1=".to_owned()
                + &{
                    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(b"secret") else {
                        unreachable!("HMAC takes keys of any size")
                    };
                    mac.update(b"1700000000.{\"a\":1}");
                    hex::encode(mac.finalize().into_bytes())
                }
        );
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let cfg = WebhookConfig {
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            max_attempts: 30,
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            concurrency: 4,
            allow: Vec::new(),
        };
        assert_eq!(retry_delay(1, &cfg), Duration::from_secs(5));
        assert_eq!(retry_delay(2, &cfg), Duration::from_secs(10));
        assert_eq!(retry_delay(30, &cfg), Duration::from_secs(3600));
    }
}
