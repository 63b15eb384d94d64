//! `cdc-setup install|uninstall|status`: see `replicator::setup`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = replicator::setup::Cli::parse();
    replicator::exit_with(
        "cdc-setup",
        replicator::setup::run(cli, &mut std::io::stdout()),
    )
}
