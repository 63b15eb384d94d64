//! `replicator`: see `replicator::replicate`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match replicator::parse::<replicator::replicate::Cli>("replicator") {
        Ok(cli) => {
            let format = cli.log_format;
            replicator::init_logging(format);
            replicator::exit_with("replicator", format, replicator::replicate::run(cli))
        }
        Err(code) => code,
    }
}
