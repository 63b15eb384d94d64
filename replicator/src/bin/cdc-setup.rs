//! `cdc-setup install|uninstall|status`: see `replicator::setup`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match replicator::parse::<replicator::setup::Cli>("cdc-setup") {
        Ok(cli) => replicator::exit_with(
            "cdc-setup",
            replicator::LogFormat::Text,
            replicator::setup::run(cli, &mut std::io::stdout()),
        ),
        Err(code) => code,
    }
}
