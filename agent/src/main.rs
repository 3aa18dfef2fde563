//! `flotilla-agent`: not functional yet (see the agent issue).

fn main() -> std::process::ExitCode {
    eprintln!("flotilla-agent is not implemented yet; see ARCHITECTURE.md");
    std::process::ExitCode::from(2)
}
