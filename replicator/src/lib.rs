//! The command-line front ends of the cdc project. The binaries in
//! `src/bin` only parse arguments and call into here; everything they do
//! is a call into the `cdc` library.
#![forbid(unsafe_code)]

pub mod setup;

use std::process::ExitCode;

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
