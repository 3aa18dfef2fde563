//! End-to-end: the real `flotilla-server` binary started the way the README says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agent_process;
mod agent_sync;
mod cli;
mod demo;
mod fleet;
mod hybrid;
mod rollouts;
mod server;
mod server_inference;
mod shaped_link;
mod simulator;
