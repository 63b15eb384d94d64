//! The command-line front ends of the cdc project. The binaries in
//! `src/bin` only parse arguments and call into here; everything they do
//! is a call into the `cdc` library.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod advice;
pub mod args;
pub mod demo;
mod error;
pub mod follow;
pub mod replicate;
pub mod setup;
pub mod watch;

use std::ffi::OsString;
use std::process::ExitCode;

pub use error::{Error, Result};

/// Parses this process's arguments (see [`parse_from`]).
pub fn parse<C: clap::Parser>(program: &str) -> std::result::Result<C, ExitCode> {
    parse_from(program, std::env::args_os())
}

/// Parses arguments. `--help` and `--version` print and exit 0; a usage
/// error prints one line (`PROGRAM: error: ...`) and gives exit code 2.
/// Fixes the library names are written as commands from here on
/// ([`advice`]).
pub fn parse_from<C: clap::Parser>(
    program: &str,
    args: impl IntoIterator<Item = OsString>,
) -> std::result::Result<C, ExitCode> {
    use clap::error::ErrorKind::{DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand, DisplayVersion};
    advice::install();
    C::try_parse_from(args).map_err(|e| match e.kind() {
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
            // usage block, a hint); fold what comes before them into one.
            let text = e.to_string();
            let message = text.split("Usage:").next().unwrap_or_default();
            let message = message.split("For more information").next().unwrap_or_default();
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            let message = format!("{} (see --help)", message.trim_start_matches("error: "));
            // Asked for JSON logs: the refusal is one JSON object too.
            let args: Vec<String> = std::env::args().collect();
            let json = args.windows(2).any(|w| w[0] == "--log-format" && w[1] == "json")
                || args.iter().any(|a| a == "--log-format=json");
            report(program, if json { LogFormat::Json } else { LogFormat::Text }, &message);
            ExitCode::from(2)
        }
    })
}

/// Writes `C`'s completion script for `shell` to stdout.
pub fn completions<C: clap::CommandFactory>(shell: clap_complete::Shell, program: &str) -> Result<()> {
    let mut out = std::io::stdout();
    clap_complete::generate(shell, &mut C::command(), program, &mut out);
    std::io::Write::flush(&mut out).map_err(Error::io("stdout"))
}

/// A table name as written in SQL when it needs quoting, bare otherwise.
pub fn sql_name(table: &str) -> String {
    let bare = table.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if bare { table.to_string() } else { cdc::sql::quote_ident(table) }
}

/// Says a fatal error in one line: `PROGRAM: error: MESSAGE`, or one
/// JSON object with JSON logs.
fn report(program: &str, format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("{program}: error: {message}"),
        LogFormat::Json => {
            // Logging is not set up yet when the arguments were refused.
            init_logging(format);
            tracing::error!(program, "{message}");
        }
    }
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields` with the
    /// message and every field), for log collectors.
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`, with the NATS
/// client's own connection chatter at `warn`: outages are reported by the
/// replicator, once, with context; unless `RUST_LOG` names `async_nats`). Once per
/// process: a second call changes nothing.
pub fn init_logging(format: LogFormat) {
    init_logging_at(format, "info");
}

/// [`init_logging`] with another level when `RUST_LOG` is not set (the
/// demo prints its own numbered steps: only warnings join them).
pub fn init_logging_at(format: LogFormat, level: &str) {
    let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| level.into());
    let quiet = if wanted.contains("async_nats") { "" } else { ",async_nats=warn" };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{wanted}{quiet}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false);
    // Already set (a second call): nothing to do.
    let _ = match format {
        // Colour only for a person at a terminal, never in files or pipes.
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(false).try_init(),
    };
}

/// Runs a command, printing any error as one line on stderr (`PROGRAM:
/// error: MESSAGE`, or with JSON logs one JSON object) and turning it into
/// exit code 1 (2 for a setting that cannot work, as for clap's usage
/// errors; 0 when our reader closed the pipe). Never panics on bad input: every failure the library knows
/// of is an `Error`.
pub fn exit_with(program: &str, format: LogFormat, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): as any Unix
        // filter, stop quietly; nothing was acknowledged that it missed.
        Err(err) if broken_pipe(&err) => ExitCode::SUCCESS,
        // A setting that cannot work is a usage error, like clap's own: 2.
        Err(err @ Error::Cdc(cdc::Error::InvalidSetting(_))) => {
            report(program, format, &err.to_string());
            ExitCode::from(2)
        }
        Err(err) => {
            report(program, format, &err.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Whether `err` comes from writing to a pipe whose reader has gone.
fn broken_pipe(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(err);
    while let Some(e) = at {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return true;
        }
        at = e.source();
    }
    false
}
