//! The audit log as served at `/api/v1/audit`.

use serde::{Deserialize, Serialize};

/// One audited call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Monotonic id; newer entries have larger ids.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who: the API token's name, or `anonymous`.
    pub actor: String,
    /// The token's id, when the caller authenticated.
    pub token_id: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Route template, e.g. `/api/v1/tokens/{id}`.
    pub route: String,
    /// The concrete path called.
    pub path: String,
    /// HTTP status answered.
    pub status: u16,
    /// `success`, `denied` (401/403) or `failed`.
    pub outcome: String,
    /// What changed (ids, names), when the handler recorded it.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub detail: Option<serde_json::Value>,
}

/// Body of `GET /api/v1/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// Entries, newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}
