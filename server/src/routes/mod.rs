//! HTTP handlers, one module per resource. Handlers extract, authorise, call the domain or the
//! store, and map the result; they decide nothing else.

pub mod agent;
pub mod artifacts;
pub mod audit;
pub mod dashboard;
pub mod devices;
pub mod health;
pub mod inference;
pub mod keys;
pub mod models;
pub mod rollouts;
pub mod tokens;

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 with second precision and a `Z`, the one time format of the API.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
