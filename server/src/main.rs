use clap::Parser;
use flotilla_server::config::{Flags, Settings};
use flotilla_server::startup::Application;
use flotilla_server::telemetry;
use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    let settings = match Settings::load(&flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flotilla-server: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("flotilla-server: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(secret) = app.bootstrap_secret() {
        // Printed once, on stdout, so it can be captured; it is never logged.
        println!();
        println!("  First start: created an admin API token. It is shown only this once:");
        println!();
        println!("      {secret}");
        println!();
        println!("  export FLOTILLA_TOKEN={secret}");
        println!();
    }
    println!(
        "flotilla-server listening on {}://{}",
        app.scheme(),
        app.local_addr()
    );
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotilla-server: {e}");
            ExitCode::FAILURE
        }
    }
}
