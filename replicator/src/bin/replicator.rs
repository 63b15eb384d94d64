//! `replicator`: see `replicator::replicate`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = replicator::replicate::with_follow_shorthand(std::env::args_os());
    match replicator::parse_from::<replicator::replicate::Cli>("replicator", args) {
        Ok(cli) => {
            let format = cli.log_format;
            let demo = matches!(cli.command, Some(replicator::replicate::Command::Demo { .. }));
            replicator::init_logging_at(format, if demo { "warn" } else { "info" });
            replicator::exit_with("replicator", format, replicator::replicate::run(cli))
        }
        Err(code) => code,
    }
}
