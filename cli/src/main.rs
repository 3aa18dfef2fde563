//! `flotilla`: the operator's command line. **Architecture invariant**: it depends on neither the
//! server nor the agent crate, only on `flotilla-protocol`.

mod args;
mod client;
mod commands;
mod config;
mod error;
mod files;
mod labels;
mod output;
mod signing;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::commands::Context;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Context::new(cli.json, cli.quiet, cli.connection);
    match commands::run(&ctx, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", error.report());
            error.into()
        }
    }
}
