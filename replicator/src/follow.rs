//! `replicator follow --from nats://HOST:PORT/STREAM --target sqlite:PATH`:
//! follow a JetStream stream into a replica (see `cdc::nats::Follower`).

use std::path::PathBuf;

use clap::Args;

use cdc::StopHandle;
use cdc::nats::{Follower, FollowerOptions, NatsUrl};
use cdc::spec::TargetSpec;

use crate::args::Checked;
use crate::{Error, Result};

/// `replicator follow`.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// The stream a replicator publishes to (nats://HOST:PORT/STREAM).
    #[arg(long, value_name = "URL", value_parser = Checked::<NatsUrl>::new())]
    pub from: NatsUrl,
    /// The replica the stream is applied to: sqlite:PATH.
    #[arg(long, value_name = "TARGET", value_parser = ReplicaTarget)]
    pub target: PathBuf,
    /// Table to follow (repeat for several; default: every table).
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,
    /// The durable consumer's name (default: derived from this host and
    /// the replica's path).
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
    /// Apply what the stream holds now, then exit.
    #[arg(long)]
    pub once: bool,
}

/// `--target` of `follow`: only a replica file. A bad one is refused in
/// one line that never echoes the value (it may hold credentials).
#[derive(Clone, Copy, Debug)]
struct ReplicaTarget;

impl clap::builder::TypedValueParser for ReplicaTarget {
    type Value = PathBuf;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<PathBuf, clap::Error> {
        match Checked::<TargetSpec>::new().parse_ref(cmd, arg, value)? {
            TargetSpec::Sqlite(path) => Ok(path),
            other => Err(clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "follow needs a sqlite:PATH target (the replica it applies the stream to), not {}\n",
                    other.consumer_name()
                ),
            )),
        }
    }
}

/// Follows the stream into the replica until stopped (Ctrl-C, SIGTERM),
/// or with `--once` until the replica holds what the stream held.
pub fn run(args: FollowArgs) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(Error::io("installing signal handlers"))?;
    let stop = StopHandle::new();
    let options = FollowerOptions { tables: args.tables, durable: args.consumer, once: args.once, stop: stop.clone() };
    let handle = signals.handle();
    let watcher = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!(signal = sig, "stopping");
            stop.stop();
        }
    });
    let (from, replica) = (&args.from, &args.target);
    let result = Follower::open(from, replica, options).and_then(|mut follower| {
        tracing::info!(
            stream = %from.redacted(),
            replica = %replica.display(),
            consumer = %follower.durable(),
            position = follower.position(),
            "following"
        );
        let applied = follower.run()?;
        Ok((applied, follower.position()))
    });
    handle.close();
    let _ = watcher.join();
    let (applied, position) = result?;
    tracing::info!(applied, position, "stopped cleanly");
    Ok(())
}
