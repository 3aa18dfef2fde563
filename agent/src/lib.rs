//! The Flotilla edge agent: [`sync`] keeps the device in line with its signed desired state,
//! [`inference`] serves the installed models over the Open Inference Protocol (with [`hybrid`]
//! escalations and [`shadow`] runs of rollout candidates), and [`app`] wires both into the
//! process that `flotilla-agent` (and the demo) runs.
//!
//! **Architecture invariant**: the agent never depends on the server crate.

pub mod app;
pub mod config;
pub mod hybrid;
pub mod inference;
pub mod shadow;
pub mod sync;
