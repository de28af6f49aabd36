//! `aurora`: the Aurora Locus PDS.
//!
//! ```text
//! aurora [--config FILE] serve     run the PDS
//! aurora [--config FILE] migrate   bring the database schema up to date
//! aurora [--config FILE] config    print the effective configuration (secrets redacted)
//! ```
//!
//! Errors print one line, `aurora: <key>: <problem>`, and exit non-zero.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aurora_server::config::{Config, ConfigError};
use aurora_server::serve::{Server, shutdown_signal};
use aurora_server::{Aurora, app, storage};
use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    if let Command::Config = cli.command {
        print!("{}", config.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    init_tracing(&config);
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
            Command::Config => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("aurora: {e}");
    ExitCode::FAILURE
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
    let pds = aurora.builder()?.build().map_err(|e| ConfigError {
        key: "plugins".to_owned(),
        message: e.to_string(),
    })?;
    let app = app::router(&pds, &aurora.http_settings());
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
    let result = server.serve(shutdown_signal()).await;
    aurora.storage.close().await;
    result.map_err(|e| ConfigError {
        key: "AURORA_LISTEN".to_owned(),
        message: format!("server failed: {e}"),
    })?;
    tracing::info!("stopped");
    Ok(())
}
