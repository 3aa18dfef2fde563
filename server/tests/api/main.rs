//! The server's integration tests: the real application on port 0, a fresh database per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod blob;
mod caching;
mod dashboard;
mod errors;
mod fleet;
mod health;
mod inference;
mod openapi;
mod registry;
mod registry_upstream;
mod rollouts;
mod server_key;
mod store;
mod tls;
mod tokens;
mod trust;
