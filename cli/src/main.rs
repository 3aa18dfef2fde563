//! `flotilla`: the operator's command line. **Architecture invariant**: it depends on neither the
//! server nor the agent crate, only on `flotilla-protocol`.

use clap::Parser;

/// Flotilla fleet model management.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
