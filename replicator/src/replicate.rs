//! `replicator`: follow a source's log and apply it to a target until
//! stopped (Ctrl-C, SIGTERM), or once with `--once`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use cdc::signal::SignalKind;
use cdc::spec::{EventFormat, TargetSpec};
use cdc::{BootstrapMode, Engine, OnRewind, Progress};

use crate::args::{Checked, choice, duration, duration_or_zero};
use crate::{Error, Result};

/// Replicate a captured SQLite database to a replica file or another target.
#[derive(Debug, Parser)]
#[command(
    name = "replicator",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = EXAMPLES
)]
pub struct Cli {
    #[allow(missing_docs)] // a doc comment here would change --help
    #[command(subcommand)]
    pub command: Option<Command>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub replicate: ReplicateArgs,
    /// Log lines as text, or as one JSON object per line.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = crate::LogFormat::Text, global = true)]
    pub log_format: crate::LogFormat,
}

/// What `replicator` (without a subcommand) replicates, and how.
#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// The captured source database (never created).
    #[arg(long = "db", value_name = "PATH", required = true)]
    pub db: Option<PathBuf>,
    /// Where changes go: sqlite:PATH, jsonl:PATH, jsonl:-, bincode:PATH,
    /// http://URL, https://URL, nats://HOST:PORT/STREAM or kafka://HOST:PORT/PREFIX.
    #[arg(long, value_name = "TARGET", required = true, value_parser = Checked::<TargetSpec>::new())]
    pub target: Option<TargetSpec>,
    /// Table to follow (repeat for several; default: every captured table).
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,
    /// Consumer name for the durable position (default: derived from the
    /// target). What is durable: a consumer is remembered beside the
    /// source (its position, and a pin that keeps the log it still needs)
    /// once its target has taken something; a run that never delivered
    /// (an endpoint that never answered, a refused URL) pins the log only
    /// while it runs. `jsonl:-` without --consumer is a peek: each run
    /// starts with a bootstrap and leaves nothing behind. Remove a
    /// consumer with `cdc-setup consumers --db PATH --remove NAME`.
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
    /// When to reseed tables from a snapshot: whenever the target does not
    /// hold a table (auto), once at start for every table then as auto
    /// (always), or never (a table the target does not hold is refused).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = choice::<BootstrapMode>(&BootstrapMode::NAMES))]
    pub bootstrap: BootstrapMode,
    /// When the source's log is not the one the target followed (restored
    /// from an older backup, or another database): bootstrap every table
    /// again (reseed), or stop with an error that says how to reseed.
    #[arg(long, value_name = "POLICY", default_value = "reseed", value_parser = choice::<OnRewind>(&OnRewind::NAMES))]
    pub on_rewind: OnRewind,
    /// What wakes the replicator: a file watcher on the database's folder
    /// (fs), a timer (--poll-interval), or both (some containers and
    /// network file systems deliver no file events).
    #[arg(long, value_name = "KIND", default_value = "fs+timer", value_parser = choice::<SignalKind>(&SignalKind::NAMES))]
    pub signal: SignalKind,
    /// Timer interval, e.g. 250ms or 2s.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = duration)]
    pub poll_interval: Duration,
    /// At most one write of this consumer's record per interval while
    /// changes keep coming, e.g. 1s or 250ms. The record is a file beside
    /// the source (never the source itself) with this consumer's
    /// retention pin; jsonl/http targets may get up to one interval again
    /// after a crash.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub ack_interval: Duration,
    /// The log is freed (one short write transaction on the source, the
    /// only one the replicator makes) when the application pauses for a
    /// second, and under one that never pauses at most once per interval,
    /// e.g. 5m or 30s. A deferred transaction of the application that
    /// read before that write and writes after it is refused.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub prune_interval: Duration,
    /// Changes per batch (memory is bounded by it).
    #[arg(long, value_name = "N", default_value = "1000", value_parser = at_least_one)]
    pub batch_size: u64,
    /// Process everything visible now (bootstrapping first if needed), then exit.
    #[arg(long)]
    pub once: bool,
    /// End with exit 1 when the target (or the source) stays unreachable
    /// or locked this long, nothing undelivered acknowledged. Default:
    /// 1m with --once (a run that must end), no limit otherwise (a
    /// sidecar waits outages out); 0 means no limit.
    #[arg(long, value_name = "DURATION", value_parser = duration_or_zero)]
    pub give_up_after: Option<Duration>,
    /// How the jsonl and http targets write events: this project's
    /// lossless JSON, or Debezium's change-event envelope.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = FormatArg::Json)]
    pub format: FormatArg,
    /// With --format debezium: a `null` (a Kafka tombstone's value) after
    /// each delete.
    #[arg(long)]
    pub tombstones: bool,
    /// A status line (position, changes and seconds behind, throughput,
    /// each table's state) every DURATION, e.g. 30s; 0 turns it off.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_or_zero)]
    pub status_interval: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g.
    /// 127.0.0.1:9187 (changes applied, bootstrap rows, lag, last apply
    /// time, errors by kind, each table's state).
    #[arg(long, value_name = "ADDR", value_parser = socket_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Do not follow schema changes: a table altered, remade by a
    /// migration or given new unique indexes then stops with one line
    /// saying how to resume it, a dropped table stays in the target, new
    /// tables are not captured. By default they are followed: such a table
    /// is captured again and reseeded with its new schema, a dropped table
    /// is dropped from the target, and with every table followed new
    /// tables are captured.
    #[arg(long, overrides_with = "follow_schema")]
    pub no_follow_schema: bool,
    /// Follow schema changes (the default; kept for scripts written when
    /// it was not).
    #[arg(long, hide = true, overrides_with = "no_follow_schema")]
    pub follow_schema: bool,
}

const EXAMPLES: &str = "Examples:
  replicator --db app.db --target sqlite:replica.db            run beside the application until Ctrl-C / SIGTERM
  replicator --db app.db --target sqlite:replica.db --once     catch up once, then exit
  replicator --db app.db --target jsonl:- --table users        print the users table's changes as JSON lines
  replicator --db app.db --target https://hooks.example/cdc    POST each batch
  replicator follow --from nats://host:4222/CDC --target sqlite:replica.db
                                                                apply a NATS stream to a replica
  replicator demo                                               a self-contained demo in a temporary folder";

/// `--metrics`: an address, or a host name and port (`localhost:9187`).
fn socket_addr(text: &str) -> std::result::Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let mut addrs = text.to_socket_addrs().map_err(|e| e.to_string())?;
    addrs.next().ok_or_else(|| "the name has no address".to_string())
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// This project's lossless JSON (see docs/events.md).
    Json,
    /// Debezium's envelope: op c/u/d/r, before, after, source.
    Debezium,
}

/// Subcommands of `replicator` (without one, it replicates).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow a NATS JetStream stream that a replicator publishes to into
    /// a replica (exactly once, through a durable consumer).
    Follow(crate::follow::FollowArgs),
    /// Run a self-contained demo: a sample database, a writer, a replica,
    /// and a check that the replica equals the source.
    Demo {
        /// How long the writer writes.
        #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = duration)]
        duration: Duration,
        /// Keep the demo's files (source, replica, log) instead of deleting
        /// them; their folder is printed, to look at with `sqlite3`.
        #[arg(long)]
        keep: bool,
    },
    /// Print a shell completion script (e.g. `replicator completions bash
    /// > /etc/bash_completion.d/replicator`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `replicator --from URL ...`, the form before `follow` was a subcommand
/// (and the design's), is `replicator follow --from URL ...`.
pub fn with_follow_shorthand(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let from = args.iter().skip(1).any(|a| a == "--from" || a.to_str().is_some_and(|a| a.starts_with("--from=")));
    let subcommand = args.get(1).is_some_and(|a| !a.to_string_lossy().starts_with('-'));
    if from && !subcommand {
        args.insert(1.min(args.len()), "follow".into());
    }
    args
}

/// Parsed and checked settings; nothing touches a file before this succeeds.
struct Settings {
    db: PathBuf,
    target: TargetSpec,
    tables: Vec<String>,
    consumer: String,
    bootstrap: BootstrapMode,
    on_rewind: OnRewind,
    signal: SignalKind,
    poll_interval: Duration,
    ack_interval: Duration,
    prune_interval: Duration,
    batch_size: usize,
    follow_schema: bool,
    once: bool,
    give_up_after: Option<Duration>,
    ephemeral: bool,
    format: EventFormat,
    /// `None`: no status line.
    status_interval: Option<Duration>,
    metrics: Option<std::net::SocketAddr>,
    /// The consumer name an earlier version derived from this HTTP
    /// target's URL with its credentials in it.
    renamed_from: Option<String>,
}

impl Settings {
    fn from_args(args: ReplicateArgs) -> Result<Settings> {
        let usage = |m: &str| Error::Cdc(cdc::Error::InvalidSetting(m.into()));
        let target = args.target.ok_or_else(|| usage("--target is required"))?;
        let db = args.db.ok_or_else(|| usage("--db is required"))?;
        let format = match (args.format, args.tombstones) {
            (FormatArg::Json, true) => return Err(usage("--tombstones needs --format debezium")),
            (FormatArg::Json, false) => EventFormat::Json,
            (FormatArg::Debezium, _) if !target.writes_json() => {
                return Err(usage("--format debezium is for the jsonl and http targets"));
            }
            (FormatArg::Debezium, tombstones) => EventFormat::Debezium { tombstones },
        };
        Ok(Settings {
            db,
            renamed_from: match (&target, &args.consumer) {
                (TargetSpec::Http(url), None) if *url != target.consumer_name() => Some(url.clone()),
                _ => None,
            },
            // `jsonl:-` is a look at the stream: remembered only under a
            // name given for it.
            ephemeral: matches!(target, TargetSpec::Jsonl(None)) && args.consumer.is_none(),
            // A peek's name is its own (two peeks at once, and never a
            // durable consumer named `jsonl:stdout` by an earlier version).
            consumer: match (&args.consumer, matches!(target, TargetSpec::Jsonl(None))) {
                (Some(name), _) => name.clone(),
                (None, true) => format!("{}#peek-{}", target.consumer_name(), std::process::id()),
                (None, false) => target.consumer_name(),
            },
            target,
            tables: args.tables,
            bootstrap: args.bootstrap,
            on_rewind: args.on_rewind,
            signal: args.signal,
            poll_interval: args.poll_interval,
            ack_interval: args.ack_interval,
            prune_interval: args.prune_interval,
            batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
            once: args.once,
            give_up_after: match args.give_up_after {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => args.once.then_some(Duration::from_secs(60)),
            },
            follow_schema: !args.no_follow_schema,
            status_interval: Some(args.status_interval).filter(|d| !d.is_zero()),
            metrics: args.metrics,
            format,
        })
    }
}

/// An HTTP consumer registered by an earlier version under its URL with
/// credentials keeps its position under the redacted name, and the
/// secret leaves the source file (otherwise the old record would pin the
/// log forever).
fn rename_http_consumer(s: &Settings) -> cdc::Result<()> {
    let Some(old) = &s.renamed_from else { return Ok(()) };
    let conn = cdc::db::open(&s.db, cdc::db::Access::ReadWrite)?;
    let registered = cdc::source::consumers(&conn).is_ok_and(|c| c.iter().any(|c| &c.name == old));
    if registered && cdc::source::rename_consumer(&conn, old, &s.consumer)? {
        tracing::info!(consumer = %s.consumer, "renamed this target's consumer record to its name without credentials");
    }
    Ok(())
}

/// Draws one progress bar per table while bootstrapping, on a terminal only.
fn progress_bars() -> impl FnMut(&Progress) + Send + 'static {
    let interactive = std::io::stderr().is_terminal();
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    move |p: &Progress| {
        if !interactive {
            if p.done {
                tracing::info!(table = %p.table, rows = p.rows, elapsed = ?p.elapsed, "bootstrapped");
            }
            return;
        }
        let bar = bars.entry(p.table.to_string()).or_insert_with(|| {
            let bar = ProgressBar::new(p.total);
            bar.set_style(
                ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} rows {per_sec} {elapsed} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(p.table.to_string());
            // Redrawn while nothing is reported: a table SQLite copies in
            // one statement says only its start and its end.
            bar.enable_steady_tick(std::time::Duration::from_millis(250));
            bar
        });
        bar.set_position(p.rows);
        if p.done {
            bar.finish();
        }
    }
}

/// Runs the replicator with already parsed arguments.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Demo { duration, keep }) => return crate::demo::run(duration, keep),
        Some(Command::Completions { shell }) => return crate::completions::<Cli>(shell, "replicator"),
        Some(Command::Follow(args)) => return crate::follow::run(args),
        None => {}
    }
    let s = Settings::from_args(cli.replicate)?;
    // Handlers first, so a Ctrl-C or SIGTERM at any moment is a clean stop.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(Error::io("installing signal handlers"))?;
    // Before the source is even opened (which may create its -wal): a
    // target that is the source itself is refused with nothing written.
    if let Some(path) = s.target.path() {
        cdc::lock::refuse_source_as_target(&s.db, path)?;
    }
    let metrics = s.metrics.map(crate::watch::bind).transpose()?;
    if s.renamed_from.is_some() {
        rename_http_consumer(&s)?;
    }
    let mut engine = Engine::builder(&s.db)
        .tables(s.tables)
        .consumer(&s.consumer)
        .batch_size(s.batch_size)
        .bootstrap(s.bootstrap)
        .on_rewind(s.on_rewind)
        .follow_schema(s.follow_schema)
        .ack_interval(s.ack_interval)
        .prune_interval(s.prune_interval)
        .give_up_after(s.give_up_after)
        .ephemeral(s.ephemeral)
        .on_progress(progress_bars())
        .open()?;
    let mut target = s.target.open_as(&s.db, s.format)?;
    engine.connect(target.as_mut())?;
    tracing::info!(
        db = %s.db.display(),
        consumer = %s.consumer,
        tables = ?engine.tables().collect::<Vec<_>>(),
        "replicating"
    );
    let stop = engine.stop_handle();
    let signal_handle = signals.handle();
    let watcher = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!(signal = sig, "stopping");
            stop.stop();
        }
    });
    let watch = crate::watch::Watch::start(engine.stats(), s.status_interval.filter(|_| !s.once), metrics)?;
    let result = if s.once {
        engine.drain(target.as_mut())
    } else {
        let mut signal = s.signal.build(&s.db, s.poll_interval);
        engine.run(target.as_mut(), signal.as_mut())
    };
    watch.stop();
    signal_handle.close();
    let _ = watcher.join();
    let drained = result?;
    // `--once` promises the target holds everything visible: a table whose
    // delivery is stopped breaks that promise, said in the exit status.
    if s.once
        && let Some(first) = engine.halted().first()
    {
        return Err(Error::Halted { first: Box::new(first.clone()), more: engine.halted().len() - 1 });
    }
    tracing::info!(
        changes = drained.changes,
        bootstrapped_rows = drained.bootstrapped_rows,
        position = drained.position,
        "stopped cleanly"
    );
    Ok(())
}

/// `--batch-size`: a whole number of at least 1, said so when it is not.
fn at_least_one(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number of at least 1".into()),
    }
}
