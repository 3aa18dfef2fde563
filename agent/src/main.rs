//! `flotilla-agent`: enroll once, then keep the device's models in line with its signed desired
//! state while serving them over the Open Inference Protocol on a local port.

use flotilla_agent::app;
use flotilla_agent::config;
use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    let args = match config::parse_args() {
        Ok(args) => args,
        Err(e) => match e.downcast::<clap::Error>() {
            // --help, --version and usage errors print and exit as clap does.
            Ok(clap) => clap.exit(),
            Err(e) => {
                eprintln!("flotilla-agent: {e:#}");
                return ExitCode::from(2);
            }
        },
    };
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
