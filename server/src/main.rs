//! `aurora`: the Aurora Locus PDS.
//!
//! ```text
//! aurora [--config FILE] serve     run the PDS
//! aurora [--config FILE] migrate   bring the database schema up to date
//! aurora [--config FILE] config    print the effective configuration (secrets redacted)
//! aurora [--config FILE] account create|list|takedown|reset-password ...
//!                                  manage accounts directly in the database
//! aurora [--config FILE] sinks status|remove ...
//!                                  event sinks' cursors and lag
//! ```
//!
//! Global flags: `--config FILE`, `--log-level FILTER`.
//!
//! Errors print one line, `aurora: <key>: <problem>`, and exit non-zero.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aurora_server::config::{Config, ConfigError, LogFormat};
use aurora_server::serve::{BackgroundTasks, Server, shutdown_signal};
use aurora_server::{Aurora, app, storage};
use clap::{Parser, Subcommand};

/// See the workspace manifest: glibc's allocator keeps freed memory in
/// per-thread arenas (argon2's 19 MiB hashes, CAR buffers), so RSS only
/// grows; mimalloc gives it back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "aurora",
    version,
    about = "Aurora Locus: an ATProto Personal Data Server"
)]
struct Cli {
    /// Configuration file (default: ./aurora.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter (`info`, `debug`, `warn,aurora_server=debug`, ...); wins
    /// over `AURORA_LOG`, `RUST_LOG` and the configuration file.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the PDS.
    Serve,
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Manage accounts (runs against the database; the server may be running).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Event sinks: their cursors and lag (runs against the database; the
    /// server may be running).
    #[command(subcommand)]
    Sinks(SinksCommand),
}

#[derive(Debug, Subcommand)]
enum SinksCommand {
    /// Per sink: its cursor, the head of the log, and how far behind it is
    /// in events and seconds.
    Status,
    /// Delete the stored cursor of a sink that is no longer configured, so
    /// that it stops holding back the pruning of the event log (a sink of
    /// that name configured later starts afresh).
    Remove {
        /// The sink's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Create an account (its DID is registered at the PLC directory).
    Create {
        /// Handle, under one of the user domains.
        #[arg(long)]
        handle: String,
        /// Contact email.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input instead
        /// of generating one (a password given as an argument would be
        /// visible to other users of the machine).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List {
        /// Most accounts to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// List accounts after this DID.
        #[arg(long)]
        after: Option<String>,
    },
    /// Take an account down (it cannot sign in, write or be served), or
    /// restore it with --revert.
    Takedown {
        /// DID or handle.
        account: String,
        /// A reference for the record (ticket number, reason).
        #[arg(long = "ref", default_value = "takedown")]
        reference: String,
        /// Lift the takedown instead.
        #[arg(long)]
        revert: bool,
    },
    /// Set a new password (generated unless --password-stdin); every
    /// session of the account ends.
    ResetPassword {
        /// DID or handle.
        account: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the account's OAuth sessions (the apps it allowed) and the
    /// browsers it is signed in on.
    OauthSessions {
        /// DID or handle.
        account: String,
    },
    /// End one OAuth session of the account (--session), or all of them
    /// and its browser sign-ins.
    RevokeOauth {
        /// DID or handle.
        account: String,
        /// The session id (as `oauth-sessions` lists it); all when absent.
        #[arg(long)]
        session: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    if let Some(filter) = &cli.log_level {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(filter) {
            return fail(&format!("--log-level: {e}"));
        }
        config.log.clone_from(filter);
    }
    if let Command::Config = cli.command {
        print!("{}", config.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    init_tracing(&config, cli.log_level.is_some());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(&config).await,
            Command::Account(command) => account::run(config, command).await,
            Command::Sinks(command) => sinks::run(&config, command).await,
            Command::Config => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

mod account {
    //! `aurora account ...`: the same account code paths as the XRPC API,
    //! straight against the database.

    use std::io::BufRead as _;

    use aurora_core::store::{Account, AccountLookup};
    use aurora_core::syntax::{Did, Handle};
    use aurora_server::Aurora;
    use aurora_server::accounts::AccountManager;
    use aurora_server::accounts::create::SignUp;
    use aurora_server::config::{Config, ConfigError};

    use super::AccountCommand;

    fn error(message: impl std::fmt::Display) -> ConfigError {
        ConfigError {
            key: "account".to_owned(),
            message: message.to_string(),
        }
    }

    pub(super) async fn run(config: Config, command: AccountCommand) -> Result<(), ConfigError> {
        let aurora = Aurora::open(config).await?;
        let pds = aurora.builder()?.build().map_err(error)?;
        let manager = aurora.api()?.account_manager(pds.context());
        let result = dispatch(&manager, command).await;
        aurora.storage.close().await;
        result
    }

    fn password(from_stdin: bool) -> Result<(String, bool), ConfigError> {
        if !from_stdin {
            return Ok((aurora_server::accounts::app_password::generate(), true));
        }
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| error(format!("cannot read the password from standard input: {e}")))?;
        Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
    }

    async fn find(manager: &AccountManager, who: &str) -> Result<Account, ConfigError> {
        let accounts = &manager.context().accounts;
        let found = if who.starts_with("did:") {
            let did = Did::parse(who).map_err(error)?;
            accounts.get_account(AccountLookup::Did(&did)).await
        } else {
            let handle = Handle::parse(who).map_err(error)?;
            accounts.get_account(AccountLookup::Handle(&handle)).await
        };
        found
            .map_err(error)?
            .ok_or_else(|| error(format!("no account {who}")))
    }

    /// `aurora account oauth-sessions`.
    async fn oauth_sessions(manager: &AccountManager, account: &str) -> Result<(), ConfigError> {
        let account = find(manager, account).await?;
        let oauth = &manager.context().oauth;
        let time =
            |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        println!("session\tclient\tcreated\trefreshed\tscope");
        for s in oauth
            .list_oauth_sessions(&account.did)
            .await
            .map_err(error)?
        {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                s.id,
                s.client_id,
                time(s.created_at),
                time(s.updated_at),
                s.scope
            );
        }
        println!("browser\tsigned in\tlast seen\tuser agent");
        for d in oauth.oauth_devices_of(&account.did).await.map_err(error)? {
            println!(
                "{}\t{}\t{}\t{}",
                d.device_id.get(..12).unwrap_or(&d.device_id),
                time(d.authenticated_at),
                time(d.last_seen_at),
                d.user_agent.as_deref().unwrap_or("-")
            );
        }
        Ok(())
    }

    /// `aurora account revoke-oauth`.
    async fn revoke_oauth(
        manager: &AccountManager,
        account: &str,
        session: Option<String>,
    ) -> Result<(), ConfigError> {
        let account = find(manager, account).await?;
        let oauth = &manager.context().oauth;
        if let Some(id) = session {
            let owned = oauth
                .list_oauth_sessions(&account.did)
                .await
                .map_err(error)?
                .iter()
                .any(|s| s.id == id);
            if !owned || !oauth.delete_oauth_session(&id).await.map_err(error)? {
                return Err(error(format!(
                    "{} has no OAuth session {id}",
                    account.handle
                )));
            }
            println!("OAuth session {id} of {} ended", account.handle);
        } else {
            let ended = oauth
                .end_oauth_sessions(&account.did)
                .await
                .map_err(error)?;
            println!(
                "{ended} OAuth sessions of {} ended; signed out of every browser",
                account.handle
            );
        }
        Ok(())
    }

    async fn dispatch(
        manager: &AccountManager,
        command: AccountCommand,
    ) -> Result<(), ConfigError> {
        let xrpc = |e: aurora_core::XrpcError| error(format!("{}: {}", e.error, e.message));
        match command {
            AccountCommand::Create {
                handle,
                email,
                password_stdin,
            } => {
                let (password, generated) = password(password_stdin)?;
                let created = manager
                    .create_account(SignUp {
                        handle,
                        email: Some(email),
                        password: Some(password.clone()),
                        ..SignUp::default()
                    })
                    .await
                    .map_err(xrpc)?;
                println!("did\t{}", created.account.did);
                println!("handle\t{}", created.account.handle);
                if generated {
                    println!("password\t{password}");
                }
            }
            AccountCommand::List { limit, after } => {
                let after = after.map(Did::parse).transpose().map_err(error)?;
                let accounts = manager
                    .context()
                    .accounts
                    .list_accounts(after.as_ref(), limit)
                    .await
                    .map_err(error)?;
                println!("did\thandle\temail\tstatus\tcreated");
                for a in accounts {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        a.did,
                        a.handle,
                        a.email.as_deref().unwrap_or("-"),
                        a.status,
                        a.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                }
            }
            AccountCommand::Takedown {
                account,
                reference,
                revert,
            } => {
                let account = find(manager, &account).await?;
                let reference = (!revert).then_some(reference.as_str());
                manager
                    .set_takedown(&account.did, reference)
                    .await
                    .map_err(xrpc)?;
                let state = if revert { "restored" } else { "taken down" };
                println!("{} ({}) {state}", account.did, account.handle);
            }
            AccountCommand::ResetPassword {
                account,
                password_stdin,
            } => {
                let account = find(manager, &account).await?;
                let (password, generated) = password(password_stdin)?;
                manager
                    .set_password(&account.did, &password)
                    .await
                    .map_err(xrpc)?;
                println!(
                    "password of {} ({}) changed; its sessions ended",
                    account.did, account.handle
                );
                if generated {
                    println!("password\t{password}");
                }
            }
            AccountCommand::OauthSessions { account } => oauth_sessions(manager, &account).await?,
            AccountCommand::RevokeOauth { account, session } => {
                revoke_oauth(manager, &account, session).await?;
            }
        }
        Ok(())
    }
}

mod sinks {
    //! `aurora sinks ...`: the sinks' cursors, read from the database.

    use std::collections::BTreeMap;

    use aurora_server::config::{Config, ConfigError};
    use aurora_server::sinks::measure_lag;
    use aurora_server::storage::Storage;

    use super::SinksCommand;

    fn error(message: impl std::fmt::Display) -> ConfigError {
        ConfigError {
            key: "sinks".to_owned(),
            message: message.to_string(),
        }
    }

    pub(super) async fn run(config: &Config, command: SinksCommand) -> Result<(), ConfigError> {
        let storage = Storage::open(config).await?;
        let result = match command {
            SinksCommand::Status => status(config, &storage).await,
            SinksCommand::Remove { name } => remove(config, &storage, &name).await,
        };
        storage.close().await;
        result
    }

    async fn status(config: &Config, storage: &Storage) -> Result<(), ConfigError> {
        let sequencer = storage.sequencer();
        let cursors = storage
            .sink_cursors()
            .list_sink_cursors()
            .await
            .map_err(error)?;
        let head = sequencer.current_seq().await.map_err(error)?;
        let now = chrono::Utc::now();
        let running_on: BTreeMap<String, String> = storage
            .sink_cursors()
            .list_sink_leases()
            .await
            .map_err(error)?
            .into_iter()
            .filter(|l| l.expires_at >= now)
            .map(|l| (l.name, l.holder))
            .collect();
        // Configured sinks first, in configuration order, then cursors
        // left behind by sinks no longer configured.
        let mut stored: BTreeMap<&str, i64> =
            cursors.iter().map(|c| (c.name.as_str(), c.seq)).collect();
        let mut rows: Vec<(String, String, Option<i64>)> = config
            .sinks
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.kind.clone(),
                    stored.remove(s.name.as_str()),
                )
            })
            .collect();
        rows.extend(
            stored
                .into_iter()
                .map(|(name, seq)| (name.to_owned(), "(not configured)".to_owned(), Some(seq))),
        );
        let show = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        println!("head\t{}", show(head));
        println!("sink\tkind\tcursor\tevents_behind\tseconds_behind\trunning_on");
        for (name, kind, cursor) in rows {
            let node = running_on.get(&name).map_or("-", String::as_str);
            let Some(cursor) = cursor else {
                println!("{name}\t{kind}\t-\t-\t-\t{node}");
                continue;
            };
            let lag = measure_lag(sequencer.as_ref(), cursor)
                .await
                .map_err(error)?;
            println!(
                "{name}\t{kind}\t{cursor}\t{}\t{}\t{node}",
                lag.events,
                lag.behind.as_secs()
            );
        }
        Ok(())
    }

    async fn remove(config: &Config, storage: &Storage, name: &str) -> Result<(), ConfigError> {
        if config.sinks.iter().any(|s| s.name == name) {
            return Err(error(format!(
                "sink {name:?} is still configured; remove its [[sinks]] entry first"
            )));
        }
        if storage
            .sink_cursors()
            .delete_sink_cursor(name)
            .await
            .map_err(error)?
        {
            println!("cursor of sink {name:?} removed");
            Ok(())
        } else {
            Err(error(format!("no sink {name:?} has a cursor")))
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("aurora: {e}");
    ExitCode::FAILURE
}

/// Logs to stderr, as text or one JSON object per line. The filter is
/// `--log-level` when given, else `RUST_LOG` when set, else `config.log`.
fn init_tracing(config: &Config, from_flag: bool) {
    use tracing_subscriber::EnvFilter;
    let configured = || EnvFilter::try_new(&config.log);
    let filter = if from_flag {
        configured()
    } else {
        EnvFilter::try_from_default_env().or_else(|_| configured())
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
}

async fn migrate(config: &Config) -> Result<(), ConfigError> {
    if config
        .database_url
        .as_deref()
        .is_some_and(|u| u.starts_with("memory:"))
    {
        tracing::info!("memory storage has no schema to migrate");
        return Ok(());
    }
    let store = storage::open_database(config).await?;
    store.close().await;
    tracing::info!("database schema is up to date");
    Ok(())
}

async fn serve(config: Config) -> Result<(), ConfigError> {
    let listen = config.listen;
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let aurora = Aurora::open(config).await?;
    let mut pds = aurora.builder()?.build().map_err(|e| ConfigError {
        key: "plugins".to_owned(),
        message: e.to_string(),
    })?;
    let app = app::router(&pds, &aurora.http_settings()?);
    let server = Server::bind(listen, app, grace)
        .await
        .map_err(|e| ConfigError {
            key: "AURORA_LISTEN".to_owned(),
            message: format!("cannot listen on {listen}: {e}"),
        })?;
    let addr = server.local_addr().map_err(|e| ConfigError {
        key: "AURORA_LISTEN".to_owned(),
        message: e.to_string(),
    })?;
    tracing::info!(%addr, hostname = %aurora.config.hostname, "listening on {addr}");
    let tasks = BackgroundTasks::spawn(pds.take_tasks());
    let result = server.serve(shutdown_signal()).await;
    drop(tasks);
    aurora.release_sink_leases().await;
    aurora.storage.close().await;
    result.map_err(|e| ConfigError {
        key: "AURORA_LISTEN".to_owned(),
        message: format!("server failed: {e}"),
    })?;
    tracing::info!("stopped");
    Ok(())
}
