//! `cdc-setup`: attach, remove and inspect capture.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use cdc::capture::{self, Installed, Status};
use cdc::db::{self, Access};
use cdc::source::ConsumerStatus;

use crate::args::choice;
use crate::{Error, Result};

/// Attach or remove change capture on a SQLite file, or show its status.
#[derive(Debug, Parser)]
#[command(name = "cdc-setup", version, after_help = EXAMPLES)]
pub struct Cli {
    #[allow(missing_docs)] // a doc comment here would change --help
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "Examples:
  cdc-setup install --db app.db --all                   capture every table
  cdc-setup install --db app.db --table users           capture one table
  cdc-setup status --db app.db                          what is captured, the log, the consumers
  cdc-setup consumers --db app.db --json                consumers for scripts
  cdc-setup migrate --db app.db -- alembic upgrade head run a migration with capture paused
  cdc-setup uninstall --db app.db                       remove capture (refused while consumers wait)";

/// Subcommands of `cdc-setup`.
#[derive(Debug, Subcommand)]
#[allow(missing_docs)] // the fields' doc comments are --help text; `db` is the shared --db
pub enum Command {
    /// Install capture triggers on tables (idempotent).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["tables", "all"])))]
    Install {
        #[command(flatten)]
        db: DbArg,
        /// Table to capture (repeat for several).
        #[arg(long = "table", value_name = "NAME")]
        tables: Vec<String>,
        /// Capture every ordinary table (views, virtual tables and
        /// internal tables are left out).
        #[arg(long)]
        all: bool,
        /// Where these tables' INSERT triggers take the row from: `new`,
        /// the values the statement inserted (the default, cheapest, exact
        /// for every trigger stored in the file: the replicator keeps
        /// capture's first); or `reread`, the row read back from the table
        /// (about a third more per insert; exact even when a TEMP trigger
        /// of the application's own connection rewrites or deletes the
        /// row just inserted, which no other process can see). Left out:
        /// as each table had it.
        #[arg(long, value_name = "FROM", value_parser = choice::<cdc::InsertImage>(&cdc::InsertImage::NAMES))]
        inserts: Option<cdc::InsertImage>,
    },
    /// Remove capture from tables, or from all of them (then the `_cdc_`
    /// tables are dropped too and the schema is as it was before).
    Uninstall {
        #[command(flatten)]
        db: DbArg,
        /// Table to stop capturing (repeat for several; default: all).
        #[arg(long = "table", value_name = "NAME")]
        tables: Vec<String>,
        /// Drop the log even though consumers have not acknowledged all of it.
        #[arg(long)]
        force: bool,
    },
    /// List consumers (position, lag in changes and seconds, last
    /// acknowledgement), or remove one whose pin holds the log back.
    Consumers {
        #[command(flatten)]
        db: DbArg,
        /// Remove this consumer (its target will bootstrap if it comes back).
        #[arg(long, value_name = "NAME")]
        remove: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Flag a consumer as stale when changes wait for it and it has
        /// acknowledged nothing for this long (e.g. 10m, 1h).
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
        stale_after: std::time::Duration,
    },
    /// Run a schema migration with capture paused: drop the capture
    /// triggers (which would block ALTER TABLE ... DROP COLUMN), run
    /// COMMAND, then attach capture again to every table that still exists.
    /// Replicators reseed those tables, so nothing written meanwhile is
    /// lost. --start and --finish do the two halves when the migration
    /// cannot be wrapped (or to end a window whose command was killed).
    Migrate {
        #[command(flatten)]
        db: DbArg,
        /// Only pause capture (open the migration window).
        #[arg(long, conflicts_with_all = ["finish", "command"])]
        start: bool,
        /// Only attach capture again (close the migration window).
        #[arg(long, conflicts_with = "command")]
        finish: bool,
        /// The migration command and its arguments, after `--`.
        #[arg(last = true, value_name = "COMMAND", required_unless_present_any = ["start", "finish"])]
        command: Vec<String>,
    },
    /// Print a shell completion script (e.g. `cdc-setup completions bash
    /// > /etc/bash_completion.d/cdc-setup`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Show captured tables, log size, consumers and schema drift.
    Status {
        #[command(flatten)]
        db: DbArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Flag a consumer as stale when changes wait for it and it has
        /// acknowledged nothing for this long (e.g. 10m, 1h).
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
        stale_after: std::time::Duration,
    },
}

/// `--db PATH`, shared by every subcommand.
#[derive(Debug, Args)]
pub struct DbArg {
    /// The SQLite database file (never created).
    #[arg(long = "db", value_name = "PATH")]
    pub path: PathBuf,
}

/// Runs `cdc-setup`, writing reports to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    match cli.command {
        Command::Completions { shell } => crate::completions::<Cli>(shell, "cdc-setup")?,
        Command::Install { db, tables, all, inserts } => {
            let mut conn = db::open(&db.path, Access::ReadWrite)?;
            let tables = if all { cdc::schema::capturable_tables(&conn)? } else { tables };
            if tables.is_empty() {
                return Err(Error::NothingToCapture(db.path));
            }
            warn_unless_wal(&conn, &db.path)?;
            let outcomes = if all {
                capture::install_every_table(&mut conn, inserts)?
            } else {
                capture::install_with(&mut conn, &tables, inserts)?
            };
            for outcome in outcomes {
                let line = match outcome {
                    Installed::New { table } => format!("installed capture on {table:?}"),
                    Installed::Upgraded { table } => format!(
                        "{table:?}: upgraded the log and capture to the current format (nothing lost; consumers go on)"
                    ),
                    Installed::Unchanged { table } => {
                        format!("{table:?}: already installed, nothing changed")
                    }
                    Installed::Reattached { table, changes } => {
                        format!("re-attached {table:?} ({changes})")
                    }
                };
                writeln!(out, "{line}").map_err(|e| io_error("stdout", e))?;
            }
        }
        Command::Uninstall { db, tables, force } => {
            let mut conn = db::open(&db.path, Access::ReadWrite)?;
            let selection = (!tables.is_empty()).then_some(tables.as_slice());
            let removed = capture::uninstall(&mut conn, selection, force)?;
            if removed.is_empty() {
                writeln!(out, "no table was captured; nothing to do").map_err(|e| io_error("stdout", e))?;
            }
            for table in removed {
                writeln!(out, "removed capture from {table:?}").map_err(|e| io_error("stdout", e))?;
            }
            if !cdc::log::is_initialised(&conn)? {
                writeln!(out, "no table is captured any more: internal _cdc_ tables dropped")
                    .map_err(|e| io_error("stdout", e))?;
            }
        }
        Command::Consumers { db, remove: Some(name), .. } => {
            let mut conn = db::open(&db.path, Access::ReadWrite)?;
            cdc::source::remove_consumer(&mut conn, &name)?;
            writeln!(out, "removed consumer {name:?}; it no longer holds the log back")
                .map_err(|e| io_error("stdout", e))?;
        }
        Command::Consumers { db, remove: None, json, stale_after } => {
            let conn = db::open(&db.path, Access::ReadOnly)?;
            let consumers = cdc::source::consumers(&conn)?;
            let stale_after = stale_after.as_secs_f64();
            let text = if json {
                let consumers = consumers_json(&consumers, stale_after)?;
                serde_json::to_string_pretty(
                    &serde_json::json!({ "db": db.path, "stale_after_seconds": stale_after, "consumers": consumers }),
                )?
            } else if consumers.is_empty() {
                "no consumers".to_string()
            } else {
                consumers.iter().map(|c| render_consumer(&db.path, c, stale_after)).collect::<Vec<_>>().join("\n")
            };
            writeln!(out, "{text}").map_err(|e| io_error("stdout", e))?;
        }
        Command::Migrate { db, start, finish, command } => {
            let mut conn = db::open(&db.path, Access::ReadWrite)?;
            // Saying is best effort here: output nobody reads (`| true`)
            // must not leave a window open or skip the command.
            let mut say = |line: String| {
                let _ = writeln!(out, "{line}");
            };
            let opened = if finish {
                None
            } else {
                let window = capture::start_migration(&mut conn)?;
                say(format!("capture paused on {} table(s): {}", window.tables.len(), window.tables.join(", ")));
                if start {
                    say(format!("migrate now; then {}", cdc::Fix::FinishMigration { db: db.path.clone() }));
                    return Ok(());
                }
                Some(window)
            };
            let status = (!command.is_empty()).then(|| run_migration(&command));
            let finished = match &opened {
                Some(window) => capture::finish_migration_unless_written(&mut conn, window)?,
                None => capture::finish_migration(&mut conn)?,
            };
            if !finished.restored.is_empty() {
                say(format!(
                    "nothing was written during the window: capture restored as it was on {} table(s), no reseed",
                    finished.restored.len()
                ));
            }
            for outcome in &finished.attached {
                say(format!("capture attached again to {:?} (replicators reseed it)", outcome.table()));
            }
            for table in &finished.gone {
                say(format!("{table:?} no longer exists (dropped or renamed): capture removed from it"));
            }
            let what = if finished.attached.is_empty() && finished.gone.is_empty() {
                "capture was restored as it was (it wrote nothing)"
            } else {
                "it wrote to the database first, so capture was attached again and replicators reseed those tables"
            };
            match status {
                Some(Err(e)) => {
                    return Err(Error::Migration {
                        command: command.join(" "),
                        outcome: format!("could not run ({e}); {what}"),
                    });
                }
                Some(Ok(code)) if code != 0 => {
                    return Err(Error::Migration {
                        command: command.join(" "),
                        outcome: format!("exited with status {code}; {what}"),
                    });
                }
                _ => {}
            }
        }
        Command::Status { db, json, stale_after } => {
            let conn = db::open(&db.path, Access::ReadOnly)?;
            let status = capture::status(&conn)?;
            let stale_after = stale_after.as_secs_f64();
            let text = if json {
                // Flat, as `consumers --json`: the file and the setting,
                // then the status's own fields.
                let mut value = serde_json::json!({ "db": db.path, "stale_after_seconds": stale_after });
                if let serde_json::Value::Object(fields) = serde_json::to_value(&status)? {
                    value.as_object_mut().expect("an object").extend(fields);
                }
                value["consumers"] = consumers_json(&status.consumers, stale_after)?;
                serde_json::to_string_pretty(&value)?
            } else {
                render_status(&db.path, &status, stale_after)
            };
            writeln!(out, "{text}").map_err(|e| io_error("stdout", e))?;
        }
    }
    Ok(())
}

/// Runs the migration command with this process's stdio; returns its exit
/// status. Ctrl-C and SIGTERM reach the command (same process group) but
/// do not stop this process, which still attaches capture again after it.
fn run_migration(command: &[String]) -> Result<i32> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).map_err(|e| io_error("installing signal handlers", e))?;
    }
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .map_err(|e| io_error(&format!("running the migration command {:?}", command[0]), e))?;
    Ok(status.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::Io { context: what.to_string(), source: e }
}

fn warn_unless_wal(conn: &cdc::db::Connection, path: &Path) -> Result<()> {
    if !db::is_wal(conn)? {
        eprintln!(
            "cdc-setup: warning: {} is not in WAL mode; readers then block the application's writers \
             (switch with: sqlite3 {} 'PRAGMA journal_mode=WAL')",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Status for people: table names, plural-correct counts, ages, and what
/// to do about a table or a consumer that needs it. `--json` keeps every
/// field (capture ids, fingerprints, timestamps).
pub fn render_status(path: &Path, s: &Status, stale_after: f64) -> String {
    let mut lines = vec![format!("database: {} ({})", path.display(), if s.wal { "WAL" } else { "not WAL" })];
    if s.tables.is_empty() {
        lines.push("capture: not installed".into());
        return lines.join("\n");
    }
    lines.push(format!("{}:", counted(s.tables.len() as i64, "captured table")));
    for t in &s.tables {
        lines.push(match &t.drift {
            None if t.inserts == cdc::InsertImage::Reread => {
                format!("  {}: captured (inserts read back from the table)", crate::sql_name(&t.name))
            }
            None => format!("  {}: captured", crate::sql_name(&t.name)),
            Some(what) => format!(
                "  {}: CHANGED since capture was attached ({what}); {}",
                crate::sql_name(&t.name),
                cdc::Fix::Reattach { db: path.into(), table: t.name.clone() }
            ),
        });
    }
    if let Some(m) = &s.migration {
        lines.push(format!(
            "migration window open since {} (capture paused on {}); {}",
            m.started,
            m.tables.iter().map(|t| crate::sql_name(t)).collect::<Vec<_>>().join(", "),
            cdc::Fix::FinishMigration { db: path.into() }
        ));
    }
    // Rows every consumer has are freed at the next quiet moment: until
    // then they are not "kept" for anyone.
    let waiting = s.consumers.iter().map(|c| c.pending).max().unwrap_or(0);
    lines.push(match (s.oldest_seq, s.newest_seq) {
        (Some(_), Some(_)) if waiting == 0 && !s.consumers.is_empty() => {
            format!("log: every consumer has all of it ({} to free)", counted(s.log_rows, "row"))
        }
        (Some(lo), Some(hi)) if lo == hi => format!("log: {} kept (seq {lo})", counted(s.log_rows, "change")),
        (Some(lo), Some(hi)) => format!("log: {} kept (seq {lo} to {hi})", counted(s.log_rows, "change")),
        _ => "log: empty".into(),
    });
    if s.consumers.is_empty() {
        lines.push("no consumers".into());
    } else {
        lines.push(format!("{}:", counted(s.consumers.len() as i64, "consumer")));
        for c in &s.consumers {
            lines.push(format!("  {}", render_consumer(path, c, stale_after)));
        }
    }
    lines.join("\n")
}

/// One consumer on one line, for people.
fn render_consumer(path: &Path, c: &ConsumerStatus, stale_after: f64) -> String {
    let pending = match c.pending {
        0 => "caught up".to_string(),
        n => format!("{} behind", counted(n, "change")),
    };
    if c.provisional {
        return format!("{}: running, nothing kept yet ({pending}; pins the log only while it runs)", c.name);
    }
    let mut line = format!("{}: {pending}; acknowledged {} ago", c.name, age(c.acknowledged_seconds_ago));
    if is_stale(c, stale_after) {
        let fix = cdc::Fix::RemoveConsumer { db: path.into(), name: c.name.clone() };
        line.push_str(&format!(
            " — STALE: nothing acknowledged for {} while changes wait, so it holds the log back; {fix}",
            age(c.acknowledged_seconds_ago),
        ));
    }
    line
}

/// A consumer that has changes waiting and has not acknowledged for
/// `stale_after` seconds: a running replicator acknowledges at least once
/// per `--ack-interval` (1 s) while changes keep coming, so it is stopped,
/// stuck, or blocked by a lock for that long.
fn is_stale(c: &ConsumerStatus, stale_after: f64) -> bool {
    c.pending > 0 && c.acknowledged_seconds_ago >= stale_after
}

/// Consumers as JSON: every field, plus `stale`.
fn consumers_json(consumers: &[ConsumerStatus], stale_after: f64) -> Result<serde_json::Value> {
    let mut list = Vec::new();
    for c in consumers {
        let mut v = serde_json::to_value(c)?;
        v["stale"] = serde_json::Value::Bool(is_stale(c, stale_after));
        list.push(v);
    }
    Ok(serde_json::Value::Array(list))
}

/// `n thing` or `n things`.
fn counted(n: i64, thing: &str) -> String {
    if n == 1 { format!("1 {thing}") } else { format!("{n} {thing}s") }
}

/// A duration in seconds as people say it: `850 ms`, `12 s`, `3 min`, `5 h`, `2 days`.
fn age(seconds: f64) -> String {
    match seconds {
        s if s < 1.0 => format!("{} ms", (s * 1000.0).round()),
        s if s < 120.0 => format!("{} s", s.round()),
        s if s < 7200.0 => format!("{} min", (s / 60.0).round()),
        s if s < 172_800.0 => format!("{} h", (s / 3600.0).round()),
        s => format!("{} days", (s / 86_400.0).round()),
    }
}
