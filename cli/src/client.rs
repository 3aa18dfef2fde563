//! The typed client of the Flotilla management API (`/api/v1`), over blocking reqwest.
//!
//! Every call has a connect timeout and a total timeout, except artifact uploads, which may take
//! as long as the bytes take (their connect phase is still bounded). Error answers become
//! [`CliError::Api`] with the server's stable code; transport failures become
//! [`CliError::Unreachable`].

use std::time::Duration;

use flotilla_protocol::devices::{
    CreateEnrollmentTokenRequest, CreatedEnrollmentToken, DeployRequest, DeploymentInfo,
    DeploymentList, DeviceInfo, DeviceList, EnrollmentTokenInfo, EnrollmentTokenList,
    SetLabelsRequest,
};
use flotilla_protocol::registry::{
    ArtifactStored, CreateModelRequest, CreateVersionRequest, ModelInfo, ModelList,
    ModelVersionInfo, PublisherKeyInfo, PublisherKeyList, RegisterKeyRequest, SetThresholdRequest,
    TrustRoot, TrustRootChain, VersionList, YankRequest,
};
use flotilla_protocol::rollouts::{RolloutInfo, SavedPolicy, WebhookInfo};
use flotilla_protocol::routes;
use flotilla_protocol::signing::SignedTrustRoot;
use flotilla_protocol::tokens::{CreateTokenRequest, CreatedToken, TokenInfo, TokenList, WhoAmI};
use flotilla_protocol::ApiErrorBody;
use reqwest::blocking::{Body, RequestBuilder};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::config::{Settings, Token};
use crate::error::CliError;

/// Bound on establishing a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a whole API call, except artifact uploads.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

// The fleet routes are not (yet) constants of `flotilla_protocol::routes`, where they belong;
// they are named once here so moving them there is a one-line change each.
/// Enrollment tokens (operator, admin).
const ENROLLMENT_TOKENS: &str = "/api/v1/enrollment-tokens";
/// Devices.
const DEVICES: &str = "/api/v1/devices";
/// Deployments.
const DEPLOYMENTS: &str = "/api/v1/deployments";
const PLACEMENT: &str = "/api/v1/placement";

/// A typed answer together with the JSON the server sent (printed as is by `--json`, so fields
/// this version of the CLI does not know are not lost).
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    /// The answer, parsed.
    pub value: T,
    /// The answer as the server sent it.
    pub json: Value,
    /// The success status (`201 Created` tells a new resource from an updated one).
    pub status: StatusCode,
}

/// A client of one server, presenting one token.
#[derive(Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    base: Url,
    token: Option<Token>,
}

impl Client {
    /// A client for `settings`.
    pub fn new(settings: &Settings) -> Result<Self, CliError> {
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("flotilla-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            // Set per request instead, so uploads can go without one.
            .timeout(None)
            .build()
            .map_err(|e| CliError::config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: settings.url.clone(),
            token: settings.token.clone(),
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    // ---- tokens ----

    /// `GET /api/v1/whoami`.
    pub fn whoami(&self) -> Result<Fetched<WhoAmI>, CliError> {
        self.call(self.request(Method::GET, routes::WHOAMI, &[]))
    }

    /// `POST /api/v1/tokens`.
    pub fn create_token(
        &self,
        body: &CreateTokenRequest,
    ) -> Result<Fetched<CreatedToken>, CliError> {
        self.call(self.request(Method::POST, routes::TOKENS, &[]).json(body))
    }

    /// `GET /api/v1/tokens`.
    pub fn list_tokens(&self) -> Result<Fetched<TokenList>, CliError> {
        self.call(self.request(Method::GET, routes::TOKENS, &[]))
    }

    /// `DELETE /api/v1/tokens/{id}`.
    pub fn revoke_token(&self, id: &str) -> Result<Fetched<TokenInfo>, CliError> {
        self.call(self.request(Method::DELETE, routes::TOKENS, &[id]))
    }

    // ---- publisher keys and trust ----

    /// `POST /api/v1/publisher-keys`.
    pub fn register_key(
        &self,
        body: &RegisterKeyRequest,
    ) -> Result<Fetched<PublisherKeyInfo>, CliError> {
        self.call(
            self.request(Method::POST, routes::PUBLISHER_KEYS, &[])
                .json(body),
        )
    }

    /// `GET /api/v1/publisher-keys`.
    pub fn list_keys(&self) -> Result<Fetched<PublisherKeyList>, CliError> {
        self.call(self.request(Method::GET, routes::PUBLISHER_KEYS, &[]))
    }

    /// `DELETE /api/v1/publisher-keys/{key_id}`.
    pub fn revoke_key(&self, key_id: &str) -> Result<Fetched<PublisherKeyInfo>, CliError> {
        self.call(self.request(Method::DELETE, routes::PUBLISHER_KEYS, &[key_id]))
    }

    /// `PUT /api/v1/trust/threshold`: the trust root as it now is.
    pub fn set_threshold(
        &self,
        body: &SetThresholdRequest,
    ) -> Result<Fetched<TrustRoot>, CliError> {
        self.call(
            self.request(Method::PUT, routes::TRUST_THRESHOLD, &[])
                .json(body),
        )
    }

    /// `GET /api/v1/trust-root`.
    pub fn trust_root(&self) -> Result<Fetched<TrustRoot>, CliError> {
        self.call(self.request(Method::GET, routes::TRUST_ROOT, &[]))
    }

    /// `GET /api/v1/trust/root-draft`.
    pub fn trust_root_draft(&self) -> Result<Fetched<TrustRoot>, CliError> {
        self.call(self.request(Method::GET, routes::TRUST_ROOT_DRAFT, &[]))
    }

    /// `POST /api/v1/trust/roots`.
    pub fn publish_trust_root(
        &self,
        root: &SignedTrustRoot,
    ) -> Result<Fetched<TrustRoot>, CliError> {
        self.call(
            self.request(Method::POST, routes::TRUST_ROOTS, &[])
                .json(root),
        )
    }

    /// `GET /api/v1/trust/roots`.
    pub fn trust_roots(&self) -> Result<Fetched<TrustRootChain>, CliError> {
        self.call(self.request(Method::GET, routes::TRUST_ROOTS, &[]))
    }

    // ---- models ----

    /// `POST /api/v1/models`: true when created, false when it already existed (409).
    pub fn ensure_model(&self, body: &CreateModelRequest) -> Result<bool, CliError> {
        match self.call::<Value>(self.request(Method::POST, routes::MODELS, &[]).json(body)) {
            Ok(_) => Ok(true),
            Err(CliError::Api { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/models`.
    pub fn list_models(&self) -> Result<Fetched<ModelList>, CliError> {
        self.call(self.request(Method::GET, routes::MODELS, &[]))
    }

    /// `GET /api/v1/models/{name}`.
    pub fn model(&self, name: &str) -> Result<Fetched<ModelInfo>, CliError> {
        self.call(self.request(Method::GET, routes::MODELS, &[name]))
    }

    /// `GET /api/v1/models/{name}/versions`.
    pub fn versions(&self, name: &str) -> Result<Fetched<VersionList>, CliError> {
        self.call(self.request(Method::GET, routes::MODELS, &[name, "versions"]))
    }

    /// `POST /api/v1/models/{name}/versions`.
    pub fn create_version(
        &self,
        name: &str,
        body: &CreateVersionRequest,
    ) -> Result<Fetched<ModelVersionInfo>, CliError> {
        self.call(
            self.request(Method::POST, routes::MODELS, &[name, "versions"])
                .json(body),
        )
    }

    /// `POST /api/v1/models/{name}/versions/{version}/yank`.
    pub fn yank(
        &self,
        name: &str,
        version: &str,
        body: &YankRequest,
    ) -> Result<Fetched<ModelVersionInfo>, CliError> {
        self.call(
            self.request(
                Method::POST,
                routes::MODELS,
                &[name, "versions", version, "yank"],
            )
            .json(body),
        )
    }

    // ---- enrollment tokens, devices, deployments ----

    /// `POST /api/v1/enrollment-tokens`.
    pub fn create_enrollment_token(
        &self,
        body: &CreateEnrollmentTokenRequest,
    ) -> Result<Fetched<CreatedEnrollmentToken>, CliError> {
        self.call(
            self.request(Method::POST, ENROLLMENT_TOKENS, &[])
                .json(body),
        )
    }

    /// `GET /api/v1/enrollment-tokens`.
    pub fn list_enrollment_tokens(&self) -> Result<Fetched<EnrollmentTokenList>, CliError> {
        self.call(self.request(Method::GET, ENROLLMENT_TOKENS, &[]))
    }

    /// `DELETE /api/v1/enrollment-tokens/{id}`.
    pub fn revoke_enrollment_token(
        &self,
        id: &str,
    ) -> Result<Fetched<EnrollmentTokenInfo>, CliError> {
        self.call(self.request(Method::DELETE, ENROLLMENT_TOKENS, &[id]))
    }

    /// `GET /api/v1/devices?selector=...&status=...`.
    pub fn list_devices(
        &self,
        selector: Option<&str>,
        status: Option<&str>,
    ) -> Result<Fetched<DeviceList>, CliError> {
        let mut query = Vec::new();
        if let Some(selector) = selector {
            query.push(("selector", selector));
        }
        if let Some(status) = status {
            query.push(("status", status));
        }
        self.call(self.request(Method::GET, DEVICES, &[]).query(&query))
    }

    /// `GET /api/v1/placement?model=&group_by=`.
    pub fn placement(
        &self,
        model: &str,
        group_by: &str,
    ) -> Result<Fetched<flotilla_protocol::placement::PlacementReport>, CliError> {
        self.call(
            self.request(Method::GET, PLACEMENT, &[])
                .query(&[("model", model), ("group_by", group_by)]),
        )
    }

    /// `GET /api/v1/devices/{id}`.
    pub fn device(&self, id: &str) -> Result<Fetched<DeviceInfo>, CliError> {
        self.call(self.request(Method::GET, DEVICES, &[id]))
    }

    /// `PUT /api/v1/devices/{id}/labels`: replaces all of the device's labels.
    pub fn set_device_labels(
        &self,
        id: &str,
        body: &SetLabelsRequest,
    ) -> Result<Fetched<DeviceInfo>, CliError> {
        self.call(
            self.request(Method::PUT, DEVICES, &[id, "labels"])
                .json(body),
        )
    }

    /// `POST /api/v1/devices/{id}/approve`.
    pub fn approve_device(&self, id: &str) -> Result<Fetched<DeviceInfo>, CliError> {
        self.call(self.request(Method::POST, DEVICES, &[id, "approve"]))
    }

    /// `POST /api/v1/devices/{id}/revoke`.
    pub fn revoke_device(&self, id: &str) -> Result<Fetched<DeviceInfo>, CliError> {
        self.call(self.request(Method::POST, DEVICES, &[id, "revoke"]))
    }

    /// `POST /api/v1/devices/{id}/rotate-credential`.
    pub fn rotate_device_credential(&self, id: &str) -> Result<Fetched<DeviceInfo>, CliError> {
        self.call(self.request(Method::POST, DEVICES, &[id, "rotate-credential"]))
    }

    /// `DELETE /api/v1/devices/{id}` (204, no body).
    pub fn delete_device(&self, id: &str) -> Result<(), CliError> {
        self.call::<Value>(self.request(Method::DELETE, DEVICES, &[id]))
            .map(drop)
    }

    /// `PUT /api/v1/deployments`: `201 Created` for a new deployment, `200` when the same
    /// model and selector had one (its version is replaced).
    pub fn deploy(&self, body: &DeployRequest) -> Result<Fetched<DeploymentInfo>, CliError> {
        self.call(self.request(Method::PUT, DEPLOYMENTS, &[]).json(body))
    }

    /// `GET /api/v1/deployments`.
    pub fn list_deployments(&self) -> Result<Fetched<DeploymentList>, CliError> {
        self.call(self.request(Method::GET, DEPLOYMENTS, &[]))
    }

    /// `DELETE /api/v1/deployments/{id}` (204, no body).
    pub fn delete_deployment(&self, id: &str) -> Result<(), CliError> {
        self.call::<Value>(self.request(Method::DELETE, DEPLOYMENTS, &[id]))
            .map(drop)
    }

    // ---- rollouts ----

    /// `POST /api/v1/rollouts`.
    pub fn create_rollout(
        &self,
        body: &flotilla_protocol::rollouts::CreateRolloutRequest,
    ) -> Result<Fetched<RolloutInfo>, CliError> {
        self.call(self.request(Method::POST, routes::ROLLOUTS, &[]).json(body))
    }

    /// `GET /api/v1/rollouts`.
    pub fn list_rollouts(
        &self,
        model: Option<&str>,
        state: Option<&str>,
    ) -> Result<Fetched<RolloutList>, CliError> {
        let mut query = Vec::new();
        if let Some(m) = model {
            query.push(("model", m));
        }
        if let Some(s) = state {
            query.push(("state", s));
        }
        self.call(
            self.request(Method::GET, routes::ROLLOUTS, &[])
                .query(&query),
        )
    }

    /// `GET /api/v1/rollouts/{id}`.
    pub fn rollout(&self, id: &str) -> Result<Fetched<RolloutInfo>, CliError> {
        self.call(self.request(Method::GET, routes::ROLLOUTS, &[id]))
    }

    /// `POST /api/v1/rollouts/{id}/{action}`.
    pub fn rollout_action(
        &self,
        id: &str,
        action: &str,
        reason: Option<&str>,
    ) -> Result<Fetched<RolloutInfo>, CliError> {
        let body = flotilla_protocol::rollouts::RolloutActionRequest {
            reason: reason.map(str::to_owned),
        };
        self.call(
            self.request(Method::POST, routes::ROLLOUTS, &[id, action])
                .json(&body),
        )
    }

    /// `PUT /api/v1/rollout-policies/{name}`.
    pub fn save_policy(
        &self,
        name: &str,
        policy: &flotilla_protocol::rollouts::RolloutPolicy,
    ) -> Result<Fetched<SavedPolicy>, CliError> {
        self.call(
            self.request(Method::PUT, routes::ROLLOUT_POLICIES, &[name])
                .json(policy),
        )
    }

    /// `GET /api/v1/rollout-policies`.
    pub fn list_policies(&self) -> Result<Fetched<Value>, CliError> {
        self.call(self.request(Method::GET, routes::ROLLOUT_POLICIES, &[]))
    }

    /// `GET /api/v1/rollout-policies/{name}`.
    pub fn policy(&self, name: &str) -> Result<Fetched<SavedPolicy>, CliError> {
        self.call(self.request(Method::GET, routes::ROLLOUT_POLICIES, &[name]))
    }

    /// `DELETE /api/v1/rollout-policies/{name}`.
    pub fn delete_policy(&self, name: &str) -> Result<(), CliError> {
        self.call::<Value>(self.request(Method::DELETE, routes::ROLLOUT_POLICIES, &[name]))
            .map(drop)
    }

    /// `POST /api/v1/webhooks`.
    pub fn create_webhook(
        &self,
        body: &flotilla_protocol::rollouts::CreateWebhookRequest,
    ) -> Result<Fetched<WebhookInfo>, CliError> {
        self.call(self.request(Method::POST, routes::WEBHOOKS, &[]).json(body))
    }

    /// `GET /api/v1/webhooks`.
    pub fn list_webhooks(&self) -> Result<Fetched<Value>, CliError> {
        self.call(self.request(Method::GET, routes::WEBHOOKS, &[]))
    }

    /// `DELETE /api/v1/webhooks/{id}`.
    pub fn delete_webhook(&self, id: &str) -> Result<(), CliError> {
        self.call::<Value>(self.request(Method::DELETE, routes::WEBHOOKS, &[id]))
            .map(drop)
    }

    // ---- artifacts ----

    /// `HEAD /api/v1/artifacts/sha256/{hex}`: whether the server already stores it.
    pub fn artifact_exists(&self, sha256_hex: &str) -> Result<bool, CliError> {
        let response = self
            .request(Method::HEAD, routes::ARTIFACTS_SHA256, &[sha256_hex])
            .send()
            .map_err(|e| transport_error(&e))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            // A HEAD answer has no body: name the error after its status.
            status => Err(CliError::Api {
                status: status.as_u16(),
                code: code_for_status(status).to_owned(),
                message: format!("HEAD {} answered {status}", response.url().path()),
            }),
        }
    }

    /// `PUT /api/v1/artifacts/sha256/{hex}` streaming `body` (`size` bytes). No total timeout.
    pub fn upload_artifact(
        &self,
        sha256_hex: &str,
        body: Body,
    ) -> Result<Fetched<ArtifactStored>, CliError> {
        let url = self.url(routes::ARTIFACTS_SHA256, &[sha256_hex]);
        let mut request = self
            .http
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.secret());
        }
        self.call(request)
    }

    // ---- plumbing ----

    /// `route` (a constant of [`routes`]) followed by `segments`, each percent-encoded as one
    /// path segment (a `/` in a name cannot reach another route).
    fn url(&self, route: &str, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(route.split('/').filter(|s| !s.is_empty()))
                .extend(segments);
        }
        url
    }

    fn request(&self, method: Method, route: &str, segments: &[&str]) -> RequestBuilder {
        let mut request = self
            .http
            .request(method, self.url(route, segments))
            .timeout(REQUEST_TIMEOUT);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.secret());
        }
        request
    }

    fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<Fetched<T>, CliError> {
        let response = request.send().map_err(|e| transport_error(&e))?;
        let status = response.status();
        let text = response.text().map_err(|e| transport_error(&e))?;
        if !status.is_success() {
            let mut error = api_error(status, &text);
            if let (CliError::Api { message, .. }, StatusCode::UNAUTHORIZED, None) =
                (&mut error, status, &self.token)
            {
                message.push_str(
                    "; no token is configured: pass --token, set FLOTILLA_TOKEN \
                     or put `token` in the config file",
                );
            }
            return Err(error);
        }
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| CliError::BadResponse(format!("{status} with a non-JSON body: {e}")))?
        };
        let value = T::deserialize(&json)
            .map_err(|e| CliError::BadResponse(format!("{status} with an unexpected body: {e}")))?;
        Ok(Fetched {
            value,
            json,
            status,
        })
    }
}

/// `GET /api/v1/rollouts` answer.
#[derive(Debug, serde::Deserialize)]
pub struct RolloutList {
    /// Newest first.
    pub rollouts: Vec<RolloutInfo>,
}

/// The error for an error status and its body: the server's code and message when the body is
/// the Flotilla error body, else `http_<status>`.
pub fn api_error(status: StatusCode, body: &str) -> CliError {
    match serde_json::from_str::<ApiErrorBody>(body) {
        Ok(parsed) => CliError::Api {
            status: status.as_u16(),
            code: parsed.error.code,
            message: parsed.error.message,
        },
        Err(_) => {
            let snippet: String = body.trim().chars().take(200).collect();
            CliError::Api {
                status: status.as_u16(),
                code: code_for_status(status).to_owned(),
                message: if snippet.is_empty() {
                    format!("the server answered {status}")
                } else {
                    format!("the server answered {status}: {snippet}")
                },
            }
        }
    }
}

/// The code of an error answer that has no Flotilla error body (a HEAD, a proxy's page).
fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "bad_request",
    }
}

fn transport_error(error: &reqwest::Error) -> CliError {
    // reqwest's own text is generic ("error sending request"); the innermost cause says what
    // happened ("Connection refused", "dns error", "invalid peer certificate").
    let mut root: &dyn std::error::Error = error;
    while let Some(cause) = root.source() {
        root = cause;
    }
    let url = error
        .url()
        .map(|u| format!("{}://{}", u.scheme(), u.authority()))
        .unwrap_or_else(|| "the server".to_owned());
    if error.is_timeout() {
        CliError::Unreachable {
            code: "timeout",
            message: format!("no answer from {url} in time"),
        }
    } else if error.is_connect() {
        CliError::Unreachable {
            code: "unreachable",
            message: format!("cannot connect to {url}: {root}"),
        }
    } else {
        CliError::Unreachable {
            code: "unreachable",
            message: format!("request to {url} failed: {root}"),
        }
    }
}

/// Serializes for `--json` output.
pub fn pretty<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::resolve;

    fn client(url: &str) -> Client {
        Client::new(&resolve(Some(url.into()), None, Default::default()).unwrap()).unwrap()
    }

    #[test]
    fn urls_join_the_base_path_and_encode_each_segment() {
        let c = client("http://h:1");
        assert_eq!(
            c.url(routes::MODELS, &["fraud", "versions", "1.0.0+b"])
                .as_str(),
            "http://h:1/api/v1/models/fraud/versions/1.0.0+b"
        );
        assert_eq!(
            c.url(routes::MODELS, &["a/../b?x"]).as_str(),
            "http://h:1/api/v1/models/a%2F..%2Fb%3Fx"
        );
        // A server behind a path prefix, with or without the trailing slash.
        for base in ["http://h/flotilla", "http://h/flotilla/"] {
            assert_eq!(
                client(base).url(routes::TOKENS, &[]).as_str(),
                "http://h/flotilla/api/v1/tokens"
            );
        }
        assert_eq!(
            c.url(routes::ARTIFACTS_SHA256, &["ab"]).as_str(),
            format!("http://h:1{}", routes::artifact("ab"))
        );
        assert_eq!(
            c.url(DEVICES, &["3b1c", "labels"]).as_str(),
            "http://h:1/api/v1/devices/3b1c/labels"
        );
        assert_eq!(
            c.url(ENROLLMENT_TOKENS, &["../tokens"]).as_str(),
            "http://h:1/api/v1/enrollment-tokens/..%2Ftokens"
        );
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let e = api_error(
            StatusCode::CONFLICT,
            r#"{"error":{"code":"conflict","message":"version 1.0.0 exists with other content"}}"#,
        );
        assert_eq!(e.code(), "conflict");
        assert_eq!(e.to_string(), "version 1.0.0 exists with other content");
        assert_eq!(e.exit_code(), 1);

        let e = api_error(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>");
        assert_eq!(e.code(), "internal");
        assert!(e.to_string().contains("502"), "{e}");
        assert_eq!(e.exit_code(), 3);

        let e = api_error(StatusCode::FORBIDDEN, "");
        assert_eq!((e.code(), e.exit_code()), ("forbidden", 1));
    }

    #[test]
    fn a_closed_port_is_unreachable_with_exit_3() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(); // the listener is dropped: nothing listens there any more
        let err = client(&format!("http://127.0.0.1:{port}"))
            .whoami()
            .unwrap_err();
        assert_eq!(err.code(), "unreachable");
        assert_eq!(err.exit_code(), 3);
    }
}
