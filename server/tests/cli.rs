//! Tests of the `aurora` binary as a user runs it: configuration layering
//! and redaction, one-line errors for bad values, `migrate`, and `serve` as a
//! real process that stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn aurora(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aurora"));
    // A clean environment: nothing inherited can change the configuration.
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_BACKTRACE", "1")
        .current_dir(dir)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    aurora(dir, args, env).output().unwrap()
}

#[test]
fn defaults_file_and_environment_layer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["config"], &[]);
    assert!(out.status.success(), "{out:?}");
    let shown: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(shown["listen"].as_str(), Some("127.0.0.1:2583"));
    assert_eq!(shown["hostname"].as_str(), Some("localhost"));
    assert_eq!(shown["data_dir"].as_str(), Some("./data"));
    assert_eq!(
        shown["database_url"].as_str(),
        Some("sqlite://./data/aurora.sqlite")
    );
    assert_eq!(
        shown["user_domains"].as_array().unwrap()[0].as_str(),
        Some(".test")
    );
    assert_eq!(shown["service_did"].as_str(), Some("did:web:localhost"));

    // aurora.toml in the working folder is read by default...
    std::fs::write(
        dir.path().join("aurora.toml"),
        "hostname = \"pds.example.com\"\nlisten = \"127.0.0.1:3000\"\nadmin_password = \"file-secret\"\n[database]\nmax_connections = 7\n",
    )
    .unwrap();
    // ... and the environment wins over it.
    let out = run(
        dir.path(),
        &["config"],
        &[
            ("AURORA_LISTEN", "0.0.0.0:4000"),
            ("AURORA_USER_DOMAINS", ".a.example, b.example"),
            ("AURORA_ADMIN_PASSWORD", "12345678"),
            ("AURORA_JWT_SECRET", "env-jwt-secret-env-jwt-secret-env-jwt"),
            (
                "AURORA_DATABASE_URL",
                "postgres://aurora:db-password@db.internal/aurora",
            ),
            ("AURORA_DATABASE__ACQUIRE_TIMEOUT_SECS", "3"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["file-secret", "12345678", "env-jwt-secret", "db-password"] {
        assert!(!text.contains(secret), "secret {secret} printed:\n{text}");
    }
    let shown: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(shown["hostname"].as_str(), Some("pds.example.com"));
    assert_eq!(shown["listen"].as_str(), Some("0.0.0.0:4000"));
    assert_eq!(shown["admin_password"].as_str(), Some("<redacted>"));
    assert_eq!(shown["jwt_secret"].as_str(), Some("<redacted>"));
    assert_eq!(
        shown["database_url"].as_str(),
        Some("postgres://aurora:redacted@db.internal/aurora")
    );
    assert_eq!(shown["database"]["max_connections"].as_integer(), Some(7));
    assert_eq!(
        shown["database"]["acquire_timeout_secs"].as_integer(),
        Some(3)
    );
    let domains: Vec<&str> = shown["user_domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(domains, [".a.example", ".b.example"]);

    // --config names another file.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "hostname = \"other.example.com\"\n").unwrap();
    let out = run(
        dir.path(),
        &["--config", other.to_str().unwrap(), "config"],
        &[],
    );
    let shown: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(shown["hostname"].as_str(), Some("other.example.com"));
}

#[test]
fn rate_limits_come_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let methods = |shown: &toml::Value, nsid: &str| -> Option<Vec<String>> {
        shown["rate_limits"]["methods"].get(nsid).map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap().to_owned())
                .collect()
        })
    };
    let out = run(dir.path(), &["config"], &[]);
    let shown: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(shown["rate_limits"]["enabled"].as_bool(), Some(true));
    assert_eq!(shown["rate_limits"]["trust_proxy"].as_bool(), Some(false));
    assert_eq!(
        methods(&shown, "com.atproto.server.createSession").unwrap(),
        ["30/5m", "300/1d"]
    );

    std::fs::write(
        dir.path().join("aurora.toml"),
        "[rate_limits.methods]\n\"com.example.file\" = [\"7/1h\"]\n",
    )
    .unwrap();
    let out = run(
        dir.path(),
        &["config"],
        &[
            ("AURORA_RATE_LIMITS__TRUST_PROXY", "true"),
            (
                "AURORA_RATE_LIMITS__METHODS",
                r#"{"com.atproto.server.createSession"=["3/1m", "20/1d"], "com.example.env"="1/10s"}"#,
            ),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let shown: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(shown["rate_limits"]["trust_proxy"].as_bool(), Some(true));
    assert_eq!(
        methods(&shown, "com.atproto.server.createSession").unwrap(),
        ["3/1m", "20/1d"]
    );
    assert_eq!(methods(&shown, "com.example.env").unwrap(), ["1/10s"]);
    assert_eq!(methods(&shown, "com.example.file").unwrap(), ["7/1h"]);
    // Methods not named keep their defaults.
    assert_eq!(
        methods(&shown, "com.atproto.server.createAccount").unwrap(),
        ["100/5m"]
    );
}

/// Asserts a failed run that printed exactly one line naming `key`.
fn assert_one_line_error(out: &Output, key: &str) -> String {
    assert!(!out.status.success(), "expected failure: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    assert!(lines[0].contains(key), "{key} not named in {:?}", lines[0]);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    lines[0].to_owned()
}

/// Arguments, environment, and the key the error must name.
type BadCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_values_exit_non_zero_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[BadCase] = &[
        (
            &["config"],
            &[("AURORA_LISTEN", "not-an-address")],
            "AURORA_LISTEN",
        ),
        (
            &["serve"],
            &[("AURORA_LISTEN", "127.0.0.1:99999")],
            "AURORA_LISTEN",
        ),
        (
            &["serve"],
            &[("AURORA_DATABASE_URL", "mysql://localhost/aurora")],
            "AURORA_DATABASE_URL",
        ),
        (
            &["migrate"],
            &[("AURORA_DATABASE_URL", "oracle:thin")],
            "AURORA_DATABASE_URL",
        ),
        (
            &["serve"],
            &[("AURORA_USER_DOMAINS", "not a domain!")],
            "AURORA_USER_DOMAINS",
        ),
        (
            &["serve"],
            &[("AURORA_HOSTNAME", "bad host name")],
            "AURORA_HOSTNAME",
        ),
        (
            &["serve"],
            &[("AURORA_PLC_URL", "::not a url")],
            "AURORA_PLC_URL",
        ),
        (
            &["serve"],
            &[("AURORA_DATABASE__MAX_CONNECTIONS", "lots")],
            "AURORA_DATABASE__MAX_CONNECTIONS",
        ),
        (
            &["serve"],
            &[("AURORA_BLOB_MAX_BYTES", "0")],
            "AURORA_BLOB_MAX_BYTES",
        ),
        (
            &["serve"],
            &[(
                "AURORA_RATE_LIMITS__METHODS",
                r#"{"com.atproto.server.createSession"=["3/1w"]}"#,
            )],
            "AURORA_RATE_LIMITS__METHODS",
        ),
        (
            &["config"],
            &[("AURORA_RATE_LIMITS__ENABLED", "maybe")],
            "AURORA_RATE_LIMITS__ENABLED",
        ),
    ];
    for (args, env, key) in cases {
        let out = run(dir.path(), args, env);
        assert_one_line_error(&out, key);
    }
    // Nothing was created by the failed starts.
    assert!(!dir.path().join("data").exists());

    let out = run(dir.path(), &["--config", "missing.toml", "config"], &[]);
    assert_one_line_error(&out, "--config");
    std::fs::write(dir.path().join("aurora.toml"), "listen = 5\n").unwrap();
    let line = assert_one_line_error(&run(dir.path(), &["config"], &[]), "listen");
    assert!(line.contains("aurora.toml"), "{line}");
}

#[test]
fn an_unreachable_database_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let started = Instant::now();
    let out = run(
        dir.path(),
        &["migrate"],
        &[
            (
                "AURORA_DATABASE_URL",
                "postgres://aurora@127.0.0.1:1/aurora",
            ),
            ("AURORA_DATABASE__ACQUIRE_TIMEOUT_SECS", "2"),
        ],
    );
    let line = assert_one_line_error(&out, "AURORA_DATABASE_URL");
    assert!(line.contains("cannot connect"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn migrate_creates_the_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["migrate"], &[("AURORA_DATA_DIR", "state")]);
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("state/aurora.sqlite").exists());
    // Running it again is a no-op.
    let out = run(dir.path(), &["migrate"], &[("AURORA_DATA_DIR", "state")]);
    assert!(out.status.success(), "{out:?}");
}

/// Runs `aurora serve`, waits for its "listening on" line, checks it
/// answers, sends `signal` (`-TERM`, or `-INT` as Ctrl-C does) and expects a
/// clean exit. Returns the log.
fn serve_and_stop(dir: &Path, env: &[(&str, &str)], signal: &str) -> String {
    let mut env = env.to_vec();
    env.push(("AURORA_LISTEN", "127.0.0.1:0"));
    let mut child = aurora(dir, &["serve"], &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early:\n{log}"
        );
        log.push_str(&line);
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let health = http_get(&addr, "/xrpc/_health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#"{"version":"#), "{health}");
    let describe = http_get(&addr, "/xrpc/com.atproto.server.describeServer");
    assert!(
        describe.contains(r#""availableUserDomains":[".test"]"#),
        "{describe}"
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "server did not stop on {signal}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    log.push_str(&rest);
    assert!(status.success(), "exit {status:?}:\n{log}");
    log
}

/// A minimal HTTP/1.1 GET, so this test needs no client library.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serve_runs_on_sqlite_generates_private_secrets_and_stops_on_sigterm_and_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let log = serve_and_stop(dir.path(), &[], "-TERM");
    assert!(log.contains("stopped"), "{log}");
    let secrets = dir.path().join("data/secrets");
    for name in ["jwt_secret", "plc_rotation_key"] {
        let path = secrets.join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
        let value = std::fs::read_to_string(&path).unwrap();
        assert!(
            !log.contains(value.trim()),
            "secret {name} appears in the log"
        );
    }
    assert!(dir.path().join("data/aurora.sqlite").exists());
    // A second start reuses the secrets.
    let before = std::fs::read_to_string(secrets.join("jwt_secret")).unwrap();
    serve_and_stop(dir.path(), &[], "-INT");
    assert_eq!(
        std::fs::read_to_string(secrets.join("jwt_secret")).unwrap(),
        before
    );
}

#[test]
fn serve_runs_on_postgres() {
    let Some(url) = aurora_storage_testkit::postgres::database("serve_runs_on_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    serve_and_stop(dir.path(), &[("AURORA_DATABASE_URL", &url)], "-TERM");
    // Migrations are recorded once; a restart works against the same database.
    serve_and_stop(dir.path(), &[("AURORA_DATABASE_URL", &url)], "-INT");
}

/// `aurora account`: operators create, list, take down and reset accounts
/// straight against the database, through the same code as the API.
#[test]
#[allow(clippy::too_many_lines)] // one operator session, start to end
fn account_commands_manage_accounts() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let plc = runtime.block_on(aurora_storage_testkit::plc::TestPlcDirectory::start());
    let dir = tempfile::tempdir().unwrap();
    let plc_url = plc.url();
    let env = [
        ("AURORA_PLC_URL", plc_url.as_str()),
        ("AURORA_PUBLIC_URL", "https://pds.test"),
    ];

    let out = run(
        dir.path(),
        &[
            "account",
            "create",
            "--handle",
            "oper.test",
            "--email",
            "op@example.com",
        ],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}\t")))
            .unwrap()
            .to_owned()
    };
    let did = field("did");
    assert!(did.starts_with("did:plc:"), "{stdout}");
    assert!(!field("password").is_empty());
    let parsed = aurora_core::syntax::Did::parse(did.as_str()).unwrap();
    assert!(plc.log(&parsed).is_some(), "the DID is registered");

    // A password from standard input is used and not printed.
    let mut child = aurora(
        dir.path(),
        &[
            "account",
            "create",
            "--handle",
            "oper2.test",
            "--email",
            "op2@example.com",
            "--password-stdin",
        ],
        &env,
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"chosen password 1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("chosen password"));

    // Bad input: a taken handle is refused with the lexicon's reason.
    let out = run(
        dir.path(),
        &[
            "account",
            "create",
            "--handle",
            "oper.test",
            "--email",
            "x@example.com",
        ],
        &env,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HandleNotAvailable"),
        "{out:?}"
    );

    let out = run(dir.path(), &["account", "list"], &env);
    assert!(out.status.success(), "{out:?}");
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.contains("oper.test") && list.contains("oper2.test"),
        "{list}"
    );
    assert!(list.contains("\tactive\t"), "{list}");

    let out = run(
        dir.path(),
        &["account", "takedown", "oper.test", "--ref", "T-1"],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let list = String::from_utf8(run(dir.path(), &["account", "list"], &env).stdout).unwrap();
    assert!(
        list.lines()
            .any(|l| l.contains("oper.test") && l.contains("takendown")),
        "{list}"
    );
    let out = run(
        dir.path(),
        &["account", "takedown", did.as_str(), "--revert"],
        &env,
    );
    assert!(out.status.success(), "{out:?}");

    // OAuth sessions: listed, one revoked, then all.
    let store = runtime
        .block_on(aurora_server::storage::open_database(
            &aurora_server::config::Config {
                // The commands run in `dir`, with the default `./data`.
                data_dir: dir.path().join("data"),
                ..aurora_server::config::Config::default()
            },
        ))
        .unwrap();
    let now = chrono::Utc::now();
    for id in ["ses-one", "ses-two"] {
        let session = aurora_core::store::OAuthSession {
            id: id.to_owned(),
            did: parsed.clone(),
            client_id: "https://app.example/client-metadata.json".to_owned(),
            client_auth: "{}".to_owned(),
            dpop_jkt: "jkt".to_owned(),
            scope: "atproto transition:generic".to_owned(),
            device_id: None,
            code: format!("cod-{id}"),
            token_id: format!("tok-{id}"),
            refresh_hash: format!("ref-{id}"),
            created_at: now,
            updated_at: now,
            expires_at: now,
        };
        runtime
            .block_on(aurora_core::store::OAuthStore::create_oauth_session(
                &store, &session,
            ))
            .unwrap();
    }
    let out = run(
        dir.path(),
        &["account", "oauth-sessions", "oper.test"],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.contains("ses-one\thttps://app.example/client-metadata.json")
            && listed.contains("ses-two"),
        "{listed}"
    );
    let out = run(
        dir.path(),
        &[
            "account",
            "revoke-oauth",
            "oper.test",
            "--session",
            "ses-one",
        ],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8(
        run(
            dir.path(),
            &["account", "oauth-sessions", did.as_str()],
            &env,
        )
        .stdout,
    )
    .unwrap();
    assert!(
        !listed.contains("ses-one") && listed.contains("ses-two"),
        "{listed}"
    );
    let out = run(
        dir.path(),
        &[
            "account",
            "revoke-oauth",
            "oper2.test",
            "--session",
            "ses-two",
        ],
        &env,
    );
    assert!(
        !out.status.success(),
        "another account's session is not revoked"
    );
    let out = run(dir.path(), &["account", "revoke-oauth", "oper.test"], &env);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 OAuth sessions"),
        "{out:?}"
    );
    runtime.block_on(store.close());

    let out = run(
        dir.path(),
        &["account", "reset-password", "oper2.test"],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("password\t")
    );
    let out = run(
        dir.path(),
        &["account", "reset-password", "nobody.test"],
        &env,
    );
    assert!(!out.status.success());
    drop(plc);
}
