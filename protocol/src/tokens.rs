//! API tokens and roles.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an API token may do. Roles are not a strict ladder: a publisher uploads models, an
/// operator moves devices between versions, an inference client only asks models for answers,
/// and only an admin manages tokens and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including tokens, publisher keys and the audit log.
    Admin,
    /// Uploads and yanks model versions.
    Publisher,
    /// Manages devices, deployments and rollouts.
    Operator,
    /// Reads everything that is not a secret.
    Viewer,
    /// Runs inference on the server's models and reads model metadata; nothing else.
    Inference,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Publisher,
        Role::Operator,
        Role::Viewer,
        Role::Inference,
    ];

    /// The role as written on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Publisher => "publisher",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Inference => "inference",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected admin, publisher, operator, viewer or inference)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// A name that says who or what uses the token (1–64 characters).
    pub name: String,
    /// The role the token carries.
    pub role: Role,
    /// Optional lifetime in seconds; the token never expires when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// A token as listed; never contains the secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it expires, if ever (RFC 3339).
    pub expires_at: Option<String>,
    /// When it was revoked, if it was (RFC 3339).
    pub revoked_at: Option<String>,
    /// When it was last used to authenticate (RFC 3339).
    pub last_used_at: Option<String>,
}

/// Answer to `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    /// The token's metadata.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret to send as `Authorization: Bearer <token>`. Shown once.
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_their_names_only() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }
}

/// Body of `GET /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    /// All tokens, oldest first, revoked ones included.
    pub tokens: Vec<TokenInfo>,
}

/// Body of `GET /api/v1/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    /// Token id.
    pub token_id: String,
    /// Token name.
    pub name: String,
    /// Role.
    pub role: Role,
}
