//! Webhooks: every rollout transition is POSTed as JSON to each registered URL, signed with
//! `X-Flotilla-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, and retried with backoff.

use backon::{ExponentialBuilder, Retryable};
use flotilla_protocol::rollouts::{WebhookEvent, WEBHOOK_SIGNATURE_HEADER};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
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

/// Whether a webhook may call `ip`: loopback, link-local, private (RFC 1918, IPv6 ULA),
/// unspecified, multicast and broadcast addresses are inside the network and refused.
pub fn destination_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT: also not the public internet.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return destination_refused(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        }
    }
}

/// Why a webhook URL is refused, if it is: its host is an address [`destination_refused`]
/// names (names are checked again after resolution, at delivery).
pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if allow_private {
        return Ok(parsed);
    }
    let refused = match parsed.host_str() {
        Some(host) => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            match bare.parse::<IpAddr>() {
                Ok(ip) => destination_refused(ip),
                Err(_) => {
                    let d = bare.trim_end_matches('.').to_ascii_lowercase();
                    d == "localhost" || d.ends_with(".localhost")
                }
            }
        }
        None => true,
    };
    if refused {
        return Err(
            "the webhook URL points at a loopback, link-local, private, unspecified or multicast address".into(),
        );
    }
    Ok(parsed)
}

/// The URL without its user-info (`https://user:pass@host` → `https://host`), for logs.
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "[unparseable url]".into(),
    }
}

/// A resolver that drops the addresses [`destination_refused`] names, so a public name that
/// resolves inside the network (or is rebound to it) is never connected to.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !destination_refused(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Sends transitions to the registered webhooks, off the caller's path.
#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    allow_private: bool,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Deliveries for the webhooks stored in `store`.
    pub fn new(store: Arc<dyn Store>, allow_private: bool) -> Webhooks {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            // A redirect would be a way around the destination check.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("flotilla-server/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder.build().unwrap_or_default();
        Webhooks {
            store,
            client,
            allow_private,
        }
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
        // Address literals never reach the resolver, so they are checked here.
        if let Err(reason) = check_url(url, self.allow_private) {
            tracing::warn!(url = %redacted(url), reason, "webhook destination refused; not delivered");
            return;
        }
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
            tracing::warn!(url = %redacted(url), error = %e.without_url(), attempts = ATTEMPTS, "webhook delivery failed");
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
