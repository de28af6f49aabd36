//! The real `aurora serve` binary as a child process, for tests that need
//! separate processes (several nodes on one database, logs as written).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `aurora serve`; killed when dropped.
pub(crate) struct AuroraProcess {
    child: Child,
    /// Everything it wrote to stdout and stderr so far.
    pub(crate) log: Arc<Mutex<String>>,
    /// `host:port` it listens on.
    pub(crate) addr: String,
}

impl AuroraProcess {
    /// Starts `aurora serve` on a free loopback port with only `env` (plus
    /// `PATH`) in its environment and `dir` as its data and working folder;
    /// returns once it logs the address it listens on.
    pub(crate) fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(dir, env, &[])
    }

    /// [`start`](Self::start) with `args` before `serve` (global flags).
    pub(crate) fn start_with_args(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aurora"));
        child
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AURORA_LISTEN", "127.0.0.1:0")
            .env("AURORA_DATA_DIR", dir)
            .current_dir(dir)
            .args(args)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            child.env(key, value);
        }
        let mut child = child.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = log.clone();
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    // `listening on <addr>`, in a text or a JSON line.
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let addr: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
                            .collect();
                        let _ = addr_tx.send(addr);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Ok(addr) = addr_rx.recv_timeout(Duration::from_millis(200)) {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                log.lock().unwrap()
            );
        };
        Self { child, log, addr }
    }

    /// `http://host:port` followed by `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Runs `aurora <args>` (a one-shot command such as `sinks status`) with
/// only `env` (plus `PATH`) in its environment and `dir` as its data and
/// working folder; returns its exit status, stdout and stderr.
pub(crate) fn run_aurora(
    dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_aurora"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AURORA_DATA_DIR", dir)
        .envs(env.iter().copied())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Drop for AuroraProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
