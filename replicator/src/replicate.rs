//! `replicator`: follow a source's log and apply it to a target until
//! stopped (Ctrl-C, SIGTERM), or once with `--once`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use cdc::signal::SignalKind;
use cdc::targets::TargetSpec;
use cdc::{BootstrapMode, Engine, Error, OnRewind, Progress};

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
    /// The captured source database (never created).
    #[arg(long = "db", value_name = "PATH", required_unless_present = "from")]
    pub db: Option<PathBuf>,
    /// Where changes go: sqlite:PATH, jsonl:PATH, jsonl:-, bincode:PATH,
    /// http://URL, https://URL or nats://HOST:PORT/STREAM.
    #[arg(long, value_name = "TARGET", required = true, value_parser = Checked::<TargetSpec>::new())]
    pub target: Option<TargetSpec>,
    /// Instead of a source database, follow a NATS JetStream stream that a
    /// replicator publishes to (nats://HOST:PORT/STREAM), into the
    /// sqlite:PATH target, through a durable consumer (named by --consumer,
    /// default derived from this host and the replica's path).
    #[arg(
        long,
        value_name = "URL",
        value_parser = Checked::<cdc::nats::NatsUrl>::new(),
        conflicts_with_all = ["db", "bootstrap", "on_rewind", "signal", "poll_interval", "ack_interval",
            "batch_size", "format", "tombstones", "follow_schema", "status_interval", "metrics"]
    )]
    pub from: Option<cdc::nats::NatsUrl>,
    /// Table to follow (repeat for several; default: every captured table).
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,
    /// Consumer name for the durable position (default: derived from the target).
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
    /// When to reseed tables from a snapshot.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = BootstrapArg::Auto)]
    pub bootstrap: BootstrapArg,
    /// When the source's log is not the one the target followed (restored
    /// from an older backup, or another database).
    #[arg(long, value_name = "POLICY", value_enum, default_value_t = RewindArg::Reseed)]
    pub on_rewind: RewindArg,
    /// What wakes the replicator.
    #[arg(long, value_name = "KIND", value_enum, default_value_t = SignalArg::FsTimer)]
    pub signal: SignalArg,
    /// Timer interval, e.g. 250ms or 2s.
    #[arg(long, value_name = "DURATION", default_value = "500ms")]
    pub poll_interval: String,
    /// At most one acknowledgement to the source per interval while
    /// changes keep coming, e.g. 1s or 250ms. Each is a short write
    /// transaction on the source (it moves this consumer's retention pin
    /// and prunes the log) that the application's writers may wait for; a
    /// longer interval disturbs them less, and jsonl/http targets may get
    /// up to one interval again after a crash.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub ack_interval: String,
    /// Changes per batch (memory is bounded by it).
    #[arg(long, value_name = "N", default_value = "1000")]
    pub batch_size: String,
    /// Process everything visible now (bootstrapping first if needed), then exit.
    #[arg(long)]
    pub once: bool,
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
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub status_interval: String,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g.
    /// 127.0.0.1:9187 (changes applied, bootstrap rows, lag, last apply
    /// time, errors by kind, each table's state).
    #[arg(long, value_name = "ADDR", value_parser = socket_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Log lines as text, or as one JSON object per line.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = crate::LogFormat::Text, global = true)]
    pub log_format: crate::LogFormat,
    /// Follow schema changes: a table altered, remade by a migration or
    /// given new unique indexes is captured again and reseeded with its new
    /// schema; a dropped table is dropped from the target; with every table
    /// followed, new tables are captured. Without it, such a table's
    /// delivery stops with one line saying how to resume it.
    #[arg(long)]
    pub follow_schema: bool,
}

const EXAMPLES: &str = "Examples:
  replicator --db app.db --target sqlite:replica.db            run beside the application until Ctrl-C / SIGTERM
  replicator --db app.db --target sqlite:replica.db --once     catch up once, then exit
  replicator --db app.db --target jsonl:- --table users        print the users table's changes as JSON lines
  replicator --db app.db --target https://hooks.example/cdc    POST each batch
  replicator demo                                               a self-contained demo in a temporary folder";

/// `--target` and `--from`: a bad address is a usage error (exit 2), said
/// in one line that never echoes credentials (clap's own message would
/// quote the raw value).
#[derive(Clone, Copy, Debug)]
pub struct Checked<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Checked<T> {
    /// A parser of `T`.
    pub fn new() -> Self {
        Checked(std::marker::PhantomData)
    }
}

impl<T> Default for Checked<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> clap::builder::TypedValueParser for Checked<T>
where
    T: std::str::FromStr<Err = Error> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        use clap::error::ErrorKind;
        let text =
            value.to_str().ok_or_else(|| clap::Error::raw(ErrorKind::InvalidUtf8, "the address is not UTF-8\n"))?;
        text.parse().map_err(|e: Error| clap::Error::raw(ErrorKind::ValueValidation, format!("{e}\n")))
    }
}

/// `--bootstrap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BootstrapArg {
    /// Whenever the target does not hold a table live.
    Auto,
    /// Once at start for every table, then as `auto`.
    Always,
    /// Never; a table the target does not hold is refused.
    Never,
}

/// `--metrics`: an address, or a host name and port (`localhost:9187`).
fn socket_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let mut addrs = text.to_socket_addrs().map_err(|e| e.to_string())?;
    addrs.next().ok_or_else(|| "the name has no address".to_string())
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// This project's lossless JSON (see the README).
    Json,
    /// Debezium's envelope: op c/u/d/r, before, after, source.
    Debezium,
}

/// `--on-rewind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RewindArg {
    /// Bootstrap every followed table again.
    Reseed,
    /// Stop with an error that says how to reseed.
    Stop,
}

/// `--signal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignalArg {
    /// A file watcher on the database's folder.
    Fs,
    /// A timer (`--poll-interval`).
    Timer,
    /// Both (some containers and network file systems deliver no file events).
    #[value(name = "fs+timer")]
    FsTimer,
}

impl From<BootstrapArg> for BootstrapMode {
    fn from(a: BootstrapArg) -> Self {
        match a {
            BootstrapArg::Auto => BootstrapMode::Auto,
            BootstrapArg::Always => BootstrapMode::Always,
            BootstrapArg::Never => BootstrapMode::Never,
        }
    }
}

impl From<RewindArg> for OnRewind {
    fn from(a: RewindArg) -> Self {
        match a {
            RewindArg::Reseed => OnRewind::Reseed,
            RewindArg::Stop => OnRewind::Stop,
        }
    }
}

impl From<SignalArg> for SignalKind {
    fn from(a: SignalArg) -> Self {
        match a {
            SignalArg::Fs => SignalKind::Fs,
            SignalArg::Timer => SignalKind::Timer,
            SignalArg::FsTimer => SignalKind::FsAndTimer,
        }
    }
}

/// Subcommands of `replicator` (without one, it replicates).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a self-contained demo: a sample database, a writer, a replica,
    /// and a check that the replica equals the source.
    Demo {
        /// How long the writer writes.
        #[arg(long, value_name = "DURATION", default_value = "3s")]
        duration: String,
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
    batch_size: usize,
    follow_schema: bool,
    once: bool,
    format: cdc::targets::EventFormat,
    /// `None`: no status line.
    status_interval: Option<Duration>,
    metrics: Option<std::net::SocketAddr>,
    /// The consumer name an earlier version derived from this HTTP
    /// target's URL with its credentials in it.
    renamed_from: Option<String>,
}

/// Parses a duration option (`250ms`, `2s`, `1h`); zero is refused.
pub fn duration(text: &str, what: &str) -> cdc::Result<Duration> {
    let d = humantime::parse_duration(text).map_err(|e| Error::Config(format!("bad {what} {text:?}: {e}")))?;
    if d.is_zero() {
        return Err(Error::Config(format!("bad {what} {text:?}: must be more than zero")));
    }
    Ok(d)
}

impl Settings {
    fn from_cli(cli: Cli) -> cdc::Result<Settings> {
        let target = cli.target.ok_or_else(|| Error::Config("--target is required".into()))?;
        if cli.format == FormatArg::Debezium && !target.writes_json() {
            return Err(Error::Config("--format debezium is for the jsonl and http targets".into()));
        }
        let batch_size = match cli.batch_size.parse::<usize>() {
            Ok(0) => return Err(Error::Config("batch size must be at least 1".into())),
            Ok(n) => n,
            Err(_) => {
                return Err(Error::Config(format!("bad batch size {:?}: expected a whole number", cli.batch_size)));
            }
        };
        Ok(Settings {
            db: cli.db.unwrap_or_default(),
            renamed_from: match (&target, &cli.consumer) {
                (TargetSpec::Http(url), None) if *url != target.consumer_name() => Some(url.clone()),
                _ => None,
            },
            consumer: cli.consumer.unwrap_or_else(|| target.consumer_name()),
            target,
            tables: cli.tables,
            bootstrap: cli.bootstrap.into(),
            on_rewind: cli.on_rewind.into(),
            signal: cli.signal.into(),
            poll_interval: duration(&cli.poll_interval, "poll interval")?,
            ack_interval: duration(&cli.ack_interval, "acknowledgement interval")?,
            batch_size,
            once: cli.once,
            follow_schema: cli.follow_schema,
            status_interval: match cli.status_interval.trim() {
                "0" => None,
                text => Some(duration(text, "status interval")?),
            },
            metrics: cli.metrics,
            format: match (cli.format, cli.tombstones) {
                (FormatArg::Json, true) => {
                    return Err(Error::Config("--tombstones needs --format debezium".into()));
                }
                (FormatArg::Json, false) => cdc::targets::EventFormat::Json,
                (FormatArg::Debezium, tombstones) => cdc::targets::EventFormat::Debezium { tombstones },
            },
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
    let registered = cdc::capture::consumers(&conn).is_ok_and(|c| c.iter().any(|c| &c.name == old));
    if registered && cdc::log::rename_consumer(&conn, old, &s.consumer)? {
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
                ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} rows {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(p.table.to_string());
            bar
        });
        bar.set_position(p.rows);
        if p.done {
            bar.finish();
        }
    }
}

/// Runs the replicator with already parsed arguments.
pub fn run(cli: Cli) -> cdc::Result<()> {
    match cli.command {
        Some(Command::Demo { duration: d, keep }) => return crate::demo::run(duration(&d, "duration")?, keep),
        Some(Command::Completions { shell }) => return crate::completions::<Cli>(shell, "replicator"),
        None => {}
    }
    if let Some(from) = cli.from {
        return crate::follow::run(&from, cli.target, cli.tables, cli.consumer, cli.once);
    }
    let s = Settings::from_cli(cli)?;
    // Handlers first, so a Ctrl-C or SIGTERM at any moment is a clean stop.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| Error::Io { context: "installing signal handlers".into(), source: e })?;
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
        && let Some(cdc::Halted { line, .. }) = engine.halted().first()
    {
        let more = engine.halted().len() - 1;
        let more = if more > 0 { format!(" (and {more} more table(s), listed above)") } else { String::new() };
        return Err(Error::Config(format!("{line}{more}")));
    }
    tracing::info!(
        changes = drained.changes,
        bootstrapped_rows = drained.bootstrapped_rows,
        position = drained.position,
        "stopped cleanly"
    );
    Ok(())
}
