//! The agent's integration tests: the real local inference API on port 0 with the committed
//! sample models, driven over HTTP; and the update loop applying signed desired states to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod device;
mod support;

mod backpressure;
mod errors;
mod hostile;
mod hot_swap;
mod infer;
mod shadow;
mod tritonclient;
