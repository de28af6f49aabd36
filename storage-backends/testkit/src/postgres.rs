//! A throwaway Postgres server for tests.
//!
//! [`database`] gives each test its own fresh database. The server is, in
//! order of preference:
//!
//! 1. the one at `AURORA_TEST_POSTGRES_URL` (a superuser URL; a database is
//!    created per test), or
//! 2. one started for this test process from the installed server binaries
//!    (`initdb` into a temporary folder, run as the `postgres` user when the
//!    tests run as root), listening on 127.0.0.1 on a free port. A watchdog
//!    shell stops it and removes its folder when the test process exits.
//!
//! When neither works the test is skipped with the reason (see [`crate::skip`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

struct Server {
    /// Admin URL without a database path, e.g. `postgres://postgres@127.0.0.1:5432`.
    base: url::Url,
    /// Folder with `psql`.
    bindir: Option<PathBuf>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A URL of a fresh, empty database for `test`, or `None` (after printing
/// why) when no Postgres can be had. Panics instead of skipping when
/// `AURORA_REQUIRE_SERVICES=1`.
pub fn database(test: &str) -> Option<String> {
    let server = match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(reason) => {
            crate::skip(test, &format!("no Postgres: {reason}"));
            return None;
        }
    };
    let name = format!(
        "aurora_t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    if let Err(e) = psql(server, &format!("CREATE DATABASE {name}")) {
        crate::skip(test, &format!("cannot create a Postgres database: {e}"));
        return None;
    }
    let mut url = server.base.clone();
    url.set_path(&name);
    Some(url.to_string())
}

fn psql(server: &Server, sql: &str) -> Result<(), String> {
    let program = server
        .bindir
        .as_ref()
        .map_or_else(|| PathBuf::from("psql"), |dir| dir.join("psql"));
    let mut admin = server.base.clone();
    admin.set_path("postgres");
    let out = Command::new(&program)
        .arg(admin.as_str())
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn start() -> Result<Server, String> {
    if let Ok(url) = std::env::var("AURORA_TEST_POSTGRES_URL") {
        let mut base =
            url::Url::parse(&url).map_err(|e| format!("AURORA_TEST_POSTGRES_URL: {e}"))?;
        base.set_path("");
        return Ok(Server {
            base,
            bindir: find_bindir().ok(),
        });
    }
    let bindir = find_bindir()?;
    let server = spawn_cluster(&bindir)?;
    Ok(server)
}

/// The folder of the newest installed Postgres server binaries.
fn find_bindir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("AURORA_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "no Postgres server binaries under /usr/lib/postgresql (install postgresql)".to_owned()
        })?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, dir)| dir)
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The command prefix that runs a program as the unprivileged `postgres`
/// user when we are root (Postgres refuses to run as root).
fn as_server_user(root: bool) -> Vec<String> {
    if root {
        vec![
            "runuser".into(),
            "-u".into(),
            "postgres".into(),
            "--".into(),
        ]
    } else {
        Vec::new()
    }
}

fn run(cmd: &[String]) -> Result<(), String> {
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("running {}: {e}", cmd[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A new cluster's folder (owned by the server user), its initialised
/// data folder, and a free loopback port for it.
struct NewCluster {
    root: bool,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
}

fn init_cluster(bindir: &Path, prefix: &str) -> Result<NewCluster, String> {
    let root = is_root();
    let dir =
        std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if root {
        run(&[
            "chown".into(),
            "postgres:postgres".into(),
            dir.display().to_string(),
        ])
        .map_err(|e| format!("{e} (is the postgres user present?)"))?;
    }
    let data = dir.join("data");
    let mut initdb = as_server_user(root);
    initdb.extend([
        bindir.join("initdb").display().to_string(),
        "-D".into(),
        data.display().to_string(),
        "-U".into(),
        "postgres".into(),
        "--auth=trust".into(),
        "-E".into(),
        "UTF8".into(),
        "--no-sync".into(),
    ]);
    run(&initdb)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    Ok(NewCluster {
        root,
        dir,
        data,
        port,
    })
}

/// Runs a shell `script` in the background, detached from our output.
fn spawn_detached(script: &str) -> std::io::Result<()> {
    Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
}

fn spawn_cluster(bindir: &Path) -> Result<Server, String> {
    let NewCluster {
        root,
        dir,
        data,
        port,
    } = init_cluster(bindir, "aurora-pg")?;
    let mut postgres = as_server_user(root);
    postgres.extend([
        bindir.join("postgres").display().to_string(),
        "-D".into(),
        data.display().to_string(),
        "-p".into(),
        port.to_string(),
        "-k".into(),
        dir.display().to_string(),
        // A throwaway server: durability off, enough connections for parallel tests.
        "-c".into(),
        "listen_addresses=127.0.0.1".into(),
        "-c".into(),
        "fsync=off".into(),
        "-c".into(),
        "synchronous_commit=off".into(),
        "-c".into(),
        "full_page_writes=off".into(),
        "-c".into(),
        "max_connections=300".into(),
    ]);
    let quoted: Vec<String> = postgres.iter().map(|a| format!("'{a}'")).collect();
    // The watchdog: runs the server, and once this test process is gone,
    // stops it (fast shutdown via the postmaster pid) and deletes its folder.
    let script = format!(
        "{cmd} >'{log}' 2>&1 &\n\
         while kill -0 {parent} 2>/dev/null; do sleep 1; done\n\
         pid=$(head -n1 '{data}/postmaster.pid' 2>/dev/null)\n\
         [ -n \"$pid\" ] && kill -INT \"$pid\" 2>/dev/null\n\
         wait\n\
         rm -rf '{dir}'\n",
        cmd = quoted.join(" "),
        log = dir.join("server.log").display(),
        parent = std::process::id(),
        data = data.display(),
        dir = dir.display(),
    );
    spawn_detached(&script).map_err(|e| format!("starting postgres: {e}"))?;

    let base = url::Url::parse(&format!("postgres://postgres@127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?;
    let server = Server {
        base,
        bindir: Some(bindir.to_owned()),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match psql(&server, "SELECT 1") {
            Ok(()) => return Ok(server),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                return Err(format!("postgres did not become ready: {e}; log: {log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// A Postgres server of one test's own, which the test can stop and start
/// again (database faults), on a free loopback port, with durable settings
/// (fsync on). A watchdog stops it and removes its folder when the test
/// process exits; dropping it does the same at once.
#[derive(Debug)]
pub struct PrivateCluster {
    bindir: PathBuf,
    root: bool,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
}

impl PrivateCluster {
    /// Creates and starts the cluster, or `None` (after printing why) when
    /// no Postgres binaries are installed. Panics instead of skipping when
    /// `AURORA_REQUIRE_SERVICES=1`.
    pub fn start(test: &str) -> Option<Self> {
        match Self::create() {
            Ok(cluster) => Some(cluster),
            Err(reason) => {
                crate::skip(test, &format!("no private Postgres: {reason}"));
                None
            }
        }
    }

    fn create() -> Result<Self, String> {
        let bindir = find_bindir()?;
        let NewCluster {
            root,
            dir,
            data,
            port,
        } = init_cluster(&bindir, "aurora-pgp")?;
        let cluster = Self {
            bindir,
            root,
            dir,
            data,
            port,
        };
        // The watchdog: once this test process is gone, stop the server
        // and delete its folder.
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done\n{stop} >/dev/null 2>&1\nrm -rf '{dir}'\n",
            parent = std::process::id(),
            stop = cluster.pg_ctl(&["stop", "-m", "immediate"]).join(" "),
            dir = cluster.dir.display(),
        );
        spawn_detached(&script).map_err(|e| format!("starting the watchdog: {e}"))?;
        cluster.resume()?;
        Ok(cluster)
    }

    /// A `pg_ctl` command line for this cluster (as the server user).
    fn pg_ctl(&self, args: &[&str]) -> Vec<String> {
        let mut cmd = as_server_user(self.root);
        cmd.extend([
            self.bindir.join("pg_ctl").display().to_string(),
            "-D".into(),
            self.data.display().to_string(),
        ]);
        cmd.extend(args.iter().map(|a| (*a).to_owned()));
        cmd
    }

    /// Starts the server (again) and waits until it accepts connections.
    ///
    /// # Errors
    /// Why it did not start.
    pub fn resume(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        run(&self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log, "-o", &options]))
    }

    /// Stops the server: `immediate` is a crash (no checkpoint, clients cut
    /// off), `fast` a clean shutdown that also disconnects clients.
    ///
    /// # Errors
    /// Why it did not stop.
    pub fn stop(&self, immediate: bool) -> Result<(), String> {
        let mode = if immediate { "immediate" } else { "fast" };
        run(&self.pg_ctl(&["stop", "-w", "-m", mode]))
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = run(&self.pg_ctl(&["stop", "-m", "immediate"]));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
