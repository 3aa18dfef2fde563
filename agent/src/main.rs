//! `flotilla-agent`: enroll once, then keep the device's models in line with its signed desired
//! state while serving them over the Open Inference Protocol on a local port.

use clap::Parser;
use flotilla_agent::app;
use flotilla_agent::config::AgentArgs;
use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    let args = AgentArgs::parse();
    app::init_logging(&args);
    match app::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("flotilla-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
