//! Throwaway message brokers for the event-sink tests: a NATS server with
//! JetStream (`nats-server -js`) and a Kafka-protocol broker (`tansu`, with
//! in-memory storage), each started for one test on a free loopback port.
//!
//! [`nats`] and [`kafka`] return a [`Broker`] once it answers its protocol
//! (NATS sends its `INFO` line; Kafka answers an `ApiVersions` request), or
//! `None` after printing why the test is skipped when the program is not
//! installed (see [`crate::skip`]: with `AURORA_REQUIRE_SERVICES=1` that is a
//! failure). [`nats_on`] and [`kafka_on`] start one on a given port, so a test
//! can point a sink at a broker that is down and start it later.
//!
//! The broker is killed when its [`Broker`] is dropped. A watchdog shell also
//! kills it and removes its folder if the test process dies without
//! unwinding.
//!
//! The programs are looked up as `AURORA_NATS_SERVER` / `AURORA_TANSU` when
//! set, else `nats-server` (also `/usr/sbin/nats-server`, where Debian puts
//! it) and `tansu` (also `$CARGO_HOME/bin/tansu`) on the `PATH`. `.ci/run`
//! installs both.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a broker gets to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which broker program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nats,
    Kafka,
}

impl Kind {
    const fn program(self) -> &'static str {
        match self {
            Self::Nats => "nats-server",
            Self::Kafka => "tansu",
        }
    }

    const fn env(self) -> &'static str {
        match self {
            Self::Nats => "AURORA_NATS_SERVER",
            Self::Kafka => "AURORA_TANSU",
        }
    }

    const fn install_hint(self) -> &'static str {
        match self {
            Self::Nats => "apt-get install nats-server",
            Self::Kafka => "cargo install --locked tansu --features dynostore",
        }
    }

    /// Other places the program is installed when it is not on the `PATH`.
    fn fallbacks(self) -> Vec<PathBuf> {
        match self {
            Self::Nats => vec![PathBuf::from("/usr/sbin/nats-server")],
            Self::Kafka => {
                let cargo_home = std::env::var_os("CARGO_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
                cargo_home
                    .map(|home| home.join("bin").join("tansu"))
                    .into_iter()
                    .collect()
            }
        }
    }
}

/// A running broker; killed when dropped.
#[derive(Debug)]
pub struct Broker {
    kind: Kind,
    program: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:<port>` or `127.0.0.1:<port>` (Kafka's bootstrap form).
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Nats => format!("nats://{}", self.addr()),
            Kind::Kafka => self.addr().to_string(),
        }
    }

    /// What the broker logged so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// Kills the broker; its port stays reserved for [`start`](Self::start).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The listening socket is gone once the process is reaped.
    }

    /// Starts the broker again on the same port (after [`stop`](Self::stop)).
    /// NATS keeps its JetStream store folder; tansu's memory storage starts
    /// empty.
    pub fn start(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = spawn(self.kind, &self.program, self.port, &self.dir)?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "{} exited with {status} before answering; log:\n{}",
                    self.kind.program(),
                    self.log()
                ));
            }
            match probe(self.kind, self.addr()) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    self.stop();
                    return Err(format!(
                        "{} did not answer on {} within {READY_TIMEOUT:?}: {e}; log:\n{}",
                        self.kind.program(),
                        self.addr(),
                        self.log()
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A NATS server with JetStream on a free loopback port, or `None` (after
/// printing why) when `nats-server` is not installed.
pub fn nats(test: &str) -> Option<Broker> {
    nats_on(test, free_port())
}

/// A NATS server with JetStream on 127.0.0.1:`port`.
pub fn nats_on(test: &str, port: u16) -> Option<Broker> {
    launch(test, Kind::Nats, port)
}

/// A Kafka-protocol broker (tansu, in-memory storage) on a free loopback
/// port, or `None` (after printing why) when `tansu` is not installed.
pub fn kafka(test: &str) -> Option<Broker> {
    kafka_on(test, free_port())
}

/// A Kafka-protocol broker (tansu, in-memory storage) on 127.0.0.1:`port`.
pub fn kafka_on(test: &str, port: u16) -> Option<Broker> {
    launch(test, Kind::Kafka, port)
}

fn launch(test: &str, kind: Kind, port: u16) -> Option<Broker> {
    let Some(program) = find_program(kind) else {
        crate::skip(
            test,
            &format!(
                "{} is not installed (set {} or run `{}`)",
                kind.program(),
                kind.env(),
                kind.install_hint()
            ),
        );
        return None;
    };
    let dir = std::env::temp_dir().join(format!(
        "aurora-{}-{}-{port}",
        kind.program(),
        std::process::id()
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        crate::skip(test, &format!("creating {}: {e}", dir.display()));
        return None;
    }
    let mut broker = Broker {
        kind,
        program,
        port,
        dir,
        child: None,
    };
    // Not a skip: the program is there, so a broker that does not come up
    // is a broken test environment.
    if let Err(e) = broker.start() {
        panic!("{test}: starting {}: {e}", kind.program());
    }
    Some(broker)
}

fn find_program(kind: Kind) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(kind.env()) {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(kind.program()))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| kind.fallbacks().into_iter().find(|p| p.is_file()))
}

fn spawn(kind: Kind, program: &Path, port: u16, dir: &Path) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join("broker.log"))
        .map_err(|e| format!("creating the broker log in {}: {e}", dir.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("opening the broker log: {e}"))?;
    let mut command = Command::new(program);
    match kind {
        Kind::Nats => {
            command
                .args(["--addr", "127.0.0.1", "--port", &port.to_string()])
                .args(["--jetstream", "--store_dir"])
                .arg(dir.join("jetstream"))
                .args(["--server_name", &format!("aurora-test-{port}")]);
        }
        Kind::Kafka => {
            let url = format!("tcp://127.0.0.1:{port}");
            command
                .args(["broker", "--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .args(["--cluster-id", "aurora-test"]);
        }
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    watchdog(child.id(), dir);
    Ok(child)
}

/// Kills `pid` and removes `dir` once this test process is gone (a process
/// that aborts does not run `Drop`).
fn watchdog(pid: u32, dir: &Path) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done\n\
         if ! kill -0 {parent} 2>/dev/null; then kill {pid} 2>/dev/null; sleep 1; rm -rf '{dir}'; fi\n",
        parent = std::process::id(),
        dir = dir.display(),
    );
    // Best effort: without a watchdog the broker still dies with `Drop`.
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// Whether the broker at `addr` speaks its protocol yet.
fn probe(kind: Kind, addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    match kind {
        Kind::Nats => {
            // The server greets every connection with `INFO {...}\r\n`.
            let mut greeting = [0u8; 5];
            stream.read_exact(&mut greeting)?;
            if &greeting == b"INFO " {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    ErrorKind::InvalidData,
                    "no INFO greeting",
                ))
            }
        }
        Kind::Kafka => {
            // ApiVersions v0 (api key 18): header v1 with correlation id 1 and
            // client id "probe", no body; the answer echoes the correlation id.
            let client_id = b"probe";
            let mut request = Vec::new();
            request.extend(18i16.to_be_bytes());
            request.extend(0i16.to_be_bytes());
            request.extend(1i32.to_be_bytes());
            request.extend(i16::try_from(client_id.len()).unwrap_or(0).to_be_bytes());
            request.extend(client_id);
            let len = i32::try_from(request.len()).unwrap_or(0);
            stream.write_all(&len.to_be_bytes())?;
            stream.write_all(&request)?;
            let mut answer = [0u8; 8];
            stream.read_exact(&mut answer)?;
            if answer[4..8] == 1i32.to_be_bytes() {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    ErrorKind::InvalidData,
                    "ApiVersions answer with a wrong correlation id",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(addr: SocketAddr) -> bool {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
    }

    fn stops_and_starts_again(mut broker: Broker) {
        let addr = broker.addr();
        probe(broker.kind, addr).unwrap();
        broker.stop();
        assert!(refused(addr), "{addr} still answers after stop");
        broker.start().unwrap();
        probe(broker.kind, addr).unwrap();
        drop(broker);
        assert!(refused(addr), "{addr} still answers after drop");
    }

    #[test]
    fn nats_server_answers_stops_and_restarts() {
        if let Some(broker) = nats("nats_server_answers_stops_and_restarts") {
            assert!(broker.url().starts_with("nats://127.0.0.1:"));
            stops_and_starts_again(broker);
        }
    }

    #[test]
    fn kafka_broker_answers_stops_and_restarts() {
        if let Some(broker) = kafka("kafka_broker_answers_stops_and_restarts") {
            stops_and_starts_again(broker);
        }
    }
}
