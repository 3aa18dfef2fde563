//! Flotilla's wire format: the types that cross the network between the server, agents and the
//! CLI, the one JSON error body, route constants, and (from the registry work on) signing.
//!
//! **Architecture invariant**: this crate depends on no web framework, database, async runtime
//! or inference engine, so every other crate can use it.

pub mod agent;
pub mod audit;
pub mod devices;
pub mod error;
pub mod health;
pub mod labels;
pub mod names;
pub mod placement;
pub mod registry;
pub mod rollouts;
pub mod routes;
pub mod signing;
pub mod tokens;

pub use error::{ApiErrorBody, ErrorCode, ErrorDetail};
