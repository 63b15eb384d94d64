//! `replicator`: see `replicator::replicate`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    replicator::init_logging();
    match replicator::parse::<replicator::replicate::Cli>("replicator") {
        Ok(cli) => replicator::exit_with("replicator", replicator::replicate::run(cli)),
        Err(code) => code,
    }
}
