//! `loadgen`: load for any ATProto PDS, measured from the outside.
//!
//! - `loadgen run`: signs up accounts, then C clients write (or run a mix of
//!   writes and reads) for T seconds or N requests, while firehose
//!   subscribers count events and their delivery latency; reports
//!   throughput, latency percentiles, errors, firehose events/s and lag,
//!   and the server's RSS and CPU (from `/proc` when `--pid` is given),
//!   including the memory each idle subscriber costs.
//! - `loadgen backfill`: reads `subscribeRepos` from a cursor until caught
//!   up and reports the backfill speed.
//! - `loadgen plc`: a stand-in PLC directory for servers under test.
//!
//! Output is a table on stdout and, with `--json FILE`, the same figures as
//! JSON.

// Counts and sizes are reported as floats (rates, MiB); the precision lost
// past 2^52 does not matter for them.
#![allow(clippy::cast_precision_loss)]

mod accounts;
mod firehose;
mod load;
mod procstat;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Errors end the run with a message; there is nothing to recover.
pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load and firehose benchmarks for ATProto PDSes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign up accounts, run write/read load with firehose subscribers.
    Run(RunArgs),
    /// Read the firehose from a cursor until caught up; report the speed.
    Backfill(BackfillArgs),
    /// Run a stand-in PLC directory (for servers under test) until ^C.
    Plc,
}

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mix {
    /// Only createRecord.
    Create,
    /// 70% createRecord, 10% deleteRecord, 20% getRecord/listRecords.
    Mixed,
}

#[derive(Args, Clone, Debug)]
pub(crate) struct RunArgs {
    /// The PDS, e.g. `http://127.0.0.1:2583`.
    #[arg(long)]
    pub url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Accounts to sign up (clients share them round-robin); default: one per client.
    #[arg(long)]
    pub accounts: Option<usize>,
    /// How long to run the load.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Stop after this many requests in all (before `--seconds` is up).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Cap the request rate of all clients together (requests per second).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The operation mix.
    #[arg(long, value_enum, default_value_t = Mix::Create)]
    pub mix: Mix,
    /// Live firehose subscribers (connected before the load starts).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// The server's process id, for RSS and CPU from `/proc`.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Handle suffix the PDS serves (`.test` signs up `lg-…-0.test`).
    #[arg(long, default_value = ".test")]
    pub handle_domain: String,
    /// Invite code, when the PDS requires one.
    #[arg(long)]
    pub invite_code: Option<String>,
    /// A label for the report (e.g. `aurora-sqlite`).
    #[arg(long, default_value = "pds")]
    pub label: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Log every write's outcome here, a JSON line each, as it happens:
    /// acknowledged creates and deletes with their record CID and commit,
    /// refused ones, and ones whose outcome is unknown (no answer). For
    /// crash tests: creates then choose their own record keys, so that an
    /// unacknowledged create can be looked for afterwards.
    #[arg(long)]
    pub ack_log: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub(crate) struct BackfillArgs {
    /// The PDS, e.g. `http://127.0.0.1:2583`.
    #[arg(long)]
    pub url: String,
    /// The cursor to start after.
    #[arg(long, default_value_t = 0)]
    pub cursor: i64,
    /// Caught up when no event came for this long (not counted in the speed).
    #[arg(long, default_value_t = 2000)]
    pub idle_ms: u64,
    /// A label for the report.
    #[arg(long, default_value = "pds")]
    pub label: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Backfill(args) => backfill(args).await,
        Command::Plc => plc().await,
    };
    if let Err(e) = outcome {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let http = aurora_server::identity::http_client(Duration::from_secs(60))?;
    let accounts =
        accounts::sign_up(&http, &args, args.accounts.unwrap_or(args.clients).max(1)).await?;
    eprintln!("loadgen: {} accounts signed up", accounts.len());
    let report = load::run(&http, &args, accounts).await?;
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

async fn backfill(args: BackfillArgs) -> Result<()> {
    let report = firehose::backfill(&args).await?;
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

async fn plc() -> Result<()> {
    let plc = aurora_storage_testkit::plc::TestPlcDirectory::start().await;
    // Scripts read the address from this line.
    println!("plc listening on {}", plc.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
