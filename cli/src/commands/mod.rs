//! One module per group of commands; each function runs one command and prints its result.

mod deployments;
mod devices;
mod enroll_tokens;
mod local;
mod models;
mod placement;
mod push;
mod registry;
mod rollouts;
mod tokens;

use std::fmt::Display;
use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{Command, Connection};
use crate::client::Client;
use crate::config;
use crate::error::CliError;

/// What every command may need: output preferences and (lazily) a client.
#[derive(Debug)]
pub struct Context {
    /// `--json`.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
    connection: Connection,
}

impl Context {
    /// A context from the global flags.
    pub fn new(json: bool, quiet: bool, connection: Connection) -> Self {
        Context {
            json,
            quiet,
            connection,
        }
    }

    /// A client of the configured server. The config file is read here, so commands that
    /// work offline never fail on it.
    pub fn client(&self) -> Result<Client, CliError> {
        let file = config::load_file(self.connection.config.as_deref())?;
        let settings = config::resolve(
            self.connection.url.clone(),
            self.connection.token.clone(),
            file,
        )?;
        Client::new(&settings)
    }

    /// A status line on stderr, unless `--quiet`.
    pub fn note(&self, message: impl Display) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// A byte progress bar on stderr; hidden with `--quiet` or when stderr is not a terminal.
    pub fn progress(&self, len: u64, what: &'static str) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(
            "{msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::new(len).with_style(style).with_message(what)
    }
}

/// Writes command output to stdout, ending it with a newline; a closed pipe (`| head`) is not
/// an error.
pub fn emit(text: impl Display) {
    let text = text.to_string();
    let mut out = std::io::stdout().lock();
    let _ = if text.ends_with('\n') {
        out.write_all(text.as_bytes())
    } else {
        writeln!(out, "{text}")
    };
}

/// Runs a parsed command.
pub fn run(ctx: &Context, command: Command) -> Result<(), CliError> {
    match command {
        Command::Keygen(args) => local::keygen(ctx, &args),
        Command::Sign(args) => local::sign(ctx, &args),
        Command::Verify(args) => local::verify(ctx, &args),
        Command::Push(args) => push::push(ctx, &args),
        Command::Models(cmd) => models::run(ctx, cmd),
        Command::Keys(cmd) => registry::keys(ctx, cmd),
        Command::Trust(cmd) => registry::trust(ctx, cmd),
        Command::Tokens(cmd) => tokens::run(ctx, cmd),
        Command::Whoami => tokens::whoami(ctx),
        Command::EnrollTokens(cmd) => enroll_tokens::run(ctx, cmd),
        Command::Devices(cmd) => devices::run(ctx, cmd),
        Command::Deploy(args) => deployments::deploy(ctx, args),
        Command::Deployments(cmd) => deployments::run(ctx, cmd),
        Command::Placement(args) => placement::run(ctx, &args),
        Command::Rollout(cmd) => rollouts::run(ctx, cmd),
        Command::Webhooks(cmd) => rollouts::webhooks(ctx, cmd),
    }
}
