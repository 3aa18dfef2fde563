//! Webhooks: every rollout transition is POSTed as JSON to each registered URL, signed with
//! `X-Flotilla-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, and retried with backoff.

use backon::{ExponentialBuilder, Retryable};
use flotilla_protocol::rollouts::{WebhookEvent, WEBHOOK_SIGNATURE_HEADER};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::rollouts::transition_info;
use crate::store::{RolloutEventRecord, RolloutRecord, Store};

/// Attempts per delivery.
const ATTEMPTS: usize = 4;

/// The signature header's value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so the error arm is never taken.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends transitions to the registered webhooks, off the caller's path.
#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn Store>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Deliveries for the webhooks stored in `store`.
    pub fn new(store: Arc<dyn Store>) -> Webhooks {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("flotilla-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Webhooks { store, client }
    }

    /// Queues the transition for every webhook; returns at once.
    pub fn deliver(&self, rollout: &RolloutRecord, event: &RolloutEventRecord) {
        let body = WebhookEvent {
            kind: "rollout.transition".into(),
            rollout_id: rollout.id.to_string(),
            model: rollout.model_name.clone(),
            version: rollout.version.clone(),
            transition: transition_info(event),
        };
        let Ok(body) = serde_json::to_vec(&body) else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let hooks = match this.store.list_webhooks().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list webhooks; transition not delivered");
                    return;
                }
            };
            for hook in hooks {
                let this = this.clone();
                let body = body.clone();
                tokio::spawn(async move { this.send(&hook.url, &hook.secret, body).await });
            }
        });
    }

    async fn send(&self, url: &str, secret: &str, body: Vec<u8>) {
        let sig = signature(secret, &body);
        let attempt = || async {
            let res = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(WEBHOOK_SIGNATURE_HEADER, &sig)
                .body(body.clone())
                .send()
                .await?;
            res.error_for_status().map(|_| ())
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(ATTEMPTS - 1)
            .with_jitter();
        if let Err(e) = attempt.retry(backoff).await {
            tracing::warn!(url, error = %e, attempts = ATTEMPTS, "webhook delivery failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
