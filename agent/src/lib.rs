//! The Flotilla edge agent. The update loop, verification and local inference API arrive with
//! the agent issue; today this crate only fixes its place in the workspace and its invariant:
//!
//! **Architecture invariant**: the agent never depends on the server crate.

pub mod inference;

pub mod config;
pub mod sync;
