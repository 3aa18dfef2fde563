//! The Flotilla server as a library, so tests build the real application in-process.
//! `main.rs` only parses flags, sets up logging and runs [`startup::Application`].

pub mod auth;
pub mod blob;
pub mod checkin;
pub mod config;
pub mod domain;
pub mod error;
pub mod inference;
pub mod ingest;
pub mod middleware;
pub mod openapi;
pub mod rollout_engine;
pub mod routes;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod webhooks;
