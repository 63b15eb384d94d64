//! `replicator --from nats://HOST:PORT/STREAM --target sqlite:PATH`:
//! follow a JetStream stream into a replica (see `cdc::nats::Follower`).

use std::sync::atomic::Ordering;

use cdc::Error;
use cdc::nats::{Follower, FollowerOptions, NatsUrl};
use cdc::targets::TargetSpec;

/// Follows `from` into the replica `target` until stopped (Ctrl-C,
/// SIGTERM), or with `once` until the replica holds what the stream held.
pub fn run(
    from: &NatsUrl,
    target: Option<TargetSpec>,
    tables: Vec<String>,
    durable: Option<String>,
    once: bool,
) -> cdc::Result<()> {
    let replica = match target {
        Some(TargetSpec::Sqlite(path)) => path,
        _ => {
            return Err(Error::Config(
                "--from needs a sqlite:PATH target (the replica it applies the stream to)".into(),
            ));
        }
    };
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| Error::Io { context: "installing signal handlers".into(), source: e })?;
    let options = FollowerOptions { tables, durable, once, ..FollowerOptions::default() };
    let stop = options.stop.clone();
    let handle = signals.handle();
    let watcher = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!(signal = sig, "stopping");
            stop.store(true, Ordering::Relaxed);
        }
    });
    let result = Follower::open(from, &replica, options).and_then(|mut follower| {
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
