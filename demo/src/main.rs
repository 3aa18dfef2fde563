//! `flotilla-demo`: the README's first command. It starts a server on the embedded default
//! (SQLite and a blob folder), creates a publisher key, signs and publishes the sample fraud
//! model, deploys it, and starts a few real agent processes that enroll, pull, verify and serve
//! it. Then it checks every agent's answer against the committed expected outputs and prints
//! how to call them.
//!
//! The agents are this same executable re-run as `flotilla-demo agent ...`, which runs exactly
//! the code of `flotilla-agent` (`flotilla_agent::app`), so `cargo run` builds one binary.

mod fleet;
mod publish;

use clap::{Parser, Subcommand};
use flotilla_agent::config::AgentArgs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "flotilla-demo",
    version,
    about = "A Flotilla server with a signed model and a small fleet of real agents, on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    demo: DemoArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one agent (used by the demo for its agent processes; the same code as
    /// `flotilla-agent`). Exits when its parent closes stdin.
    #[command(hide = true)]
    Agent(AgentArgs),
}

/// Demo settings.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its server data, keys and agent state. Recreated on each run.
    #[arg(long, default_value = "./flotilla-demo")]
    pub data_dir: PathBuf,
    /// Server address (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Number of agent processes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub agents: u16,
    /// Port of the first agent's inference API; the others take the next ports. 0 picks free
    /// ports.
    #[arg(long, default_value_t = 8000)]
    pub agent_port: u16,
    /// Seconds to wait for every agent to serve the model before giving up.
    #[arg(long, default_value_t = 180)]
    pub timeout_secs: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Agent(args)) => run_agent(args),
        None => run_demo(cli.demo),
    }
}

fn run_agent(args: AgentArgs) -> ExitCode {
    flotilla_agent::app::init_logging(&args);
    // The demo holds our stdin open; when it exits (however it dies) the pipe closes and this
    // agent goes with it, so no demo agent outlives the demo.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    match actix_web::rt::System::new().block_on(flotilla_agent::app::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotilla-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(args: DemoArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    match actix_web::rt::System::new().block_on(fleet::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotilla-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
