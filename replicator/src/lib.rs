//! The command-line front ends of the cdc project. The binaries in
//! `src/bin` only parse arguments and call into here; everything they do
//! is a call into the `cdc` library.
#![forbid(unsafe_code)]

pub mod demo;
pub mod replicate;
pub mod setup;

use std::process::ExitCode;

/// Parses arguments. `--help` and `--version` print and exit 0; a usage
/// error prints one line (`PROGRAM: error: ...`) and gives exit code 2.
pub fn parse<C: clap::Parser>(program: &str) -> Result<C, ExitCode> {
    use clap::error::ErrorKind::{DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand, DisplayVersion};
    C::try_parse().map_err(|e| match e.kind() {
        DisplayHelp | DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            // clap's message spans several lines (the missing arguments, a
            // usage block); fold what comes before the usage into one line.
            let text = e.to_string();
            let message = text.split("Usage:").next().unwrap_or_default();
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("{program}: error: {} (see --help)", message.trim_start_matches("error: "));
            ExitCode::from(2)
        }
    })
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, never in files or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

/// Runs a command, printing any error as one line on stderr (`PROGRAM:
/// error: MESSAGE`) and turning it into exit code 1. Never panics on bad
/// input: every failure the library knows of is an `Error`.
pub fn exit_with(program: &str, result: cdc::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: error: {err}");
            ExitCode::FAILURE
        }
    }
}
