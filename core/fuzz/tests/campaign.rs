//! The fuzz campaign, one test per target: replay every corpus file, then
//! run a deterministic mutation campaign seeded from the corpus (bit
//! flips, byte inserts, deletes and overwrites with boundary values and
//! CBOR heads, truncation, duplication, splicing two entries, length-field
//! and number tweaks, dictionary tokens, mutations inside base64url
//! segments).
//!
//! - `AURORA_FUZZ_ITERATIONS=N`: mutants per target (default: each
//!   target's `default_iterations`, about 30 s for all in a debug build on
//!   two cores).
//! - `AURORA_FUZZ_SEED=S`: the campaign's seed (decimal or `0x` hex).
//! - `AURORA_FUZZ_SLOW_MS` (default 5000) and `AURORA_FUZZ_HANG_MS`
//!   (default 20000): an input that takes longer than the first is a
//!   `slow-` finding; one still running after the second is a `hang-`
//!   finding, reported while the target is still stuck.
//! - `AURORA_FUZZ_TRACE=1`: write each input to
//!   `target/tmp/fuzz-current-<target>` before running it, for crashes
//!   that kill the process (a stack overflow aborts; rerun with the same
//!   seed and look at that file).
//! - `AURORA_FUZZ_REGENERATE=1`: rewrite the generated `seed-*` files of
//!   the corpus first.
//!
//! A panic or a failed invariant is saved as `corpus/<target>/crash-<hash>`
//! and fails the test with the target's name and the input in hex.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use aurora_fuzz::mutate::{Mutator, fnv1a};
use aurora_fuzz::{Outcome, Target, corpus, seeds};

/// The default campaign seed.
const DEFAULT_SEED: u64 = 0xa0_0a_f0_22;
/// At most this many accepted mutants join the pool mutants are made from.
const MAX_POOL_GROWTH: usize = 512;
/// The checked-in corpus must stay well under this.
const MAX_CORPUS_BYTES: u64 = 1024 * 1024;
/// The worker's stack: that of a tokio worker thread, where the decoders
/// run in the server.
const STACK_SIZE: usize = 2 * 1024 * 1024;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={value:?}: {e}")))
}

/// Regenerates the seeds (when asked) once, before any target reads them.
fn corpus_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if std::env::var("AURORA_FUZZ_REGENERATE").is_ok_and(|v| v == "1") {
            let changed = corpus::write_seeds(&seeds::seeds()).expect("writing the corpus");
            println!("fuzz corpus regenerated: {changed} files written or removed");
        }
    });
}

#[test]
fn corpus_is_up_to_date_and_small() {
    corpus_ready();
    let differences = corpus::seed_differences(&seeds::seeds()).expect("reading the corpus");
    assert!(
        differences.is_empty(),
        "the checked-in seed corpus is not what the generator writes; run \
         `AURORA_FUZZ_REGENERATE=1 cargo test -p aurora-fuzz` and commit core/fuzz/corpus:\n{}",
        differences.join("\n")
    );
    let mut total = 0u64;
    for target in aurora_fuzz::TARGETS {
        let files = corpus::load(target.name).expect("reading the corpus");
        assert!(!files.is_empty(), "{}: no corpus", target.name);
        total += files.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    }
    println!("fuzz corpus: {total} bytes");
    assert!(
        total < MAX_CORPUS_BYTES,
        "the corpus has grown to {total} bytes"
    );
}

/// Every generated seed is judged as its name says: `invalid-*` seeds are
/// rejected, the others accepted. (Not for `xrpc_params`, whose outcome is
/// "some parser accepted some part", which an invalid identifier's text
/// often is: `did:plc:abc%` is a fine URI.)
#[test]
fn seeds_are_judged_as_named() {
    let mut wrong = Vec::new();
    for seed in seeds::seeds() {
        if seed.target == "xrpc_params" {
            continue;
        }
        let target = aurora_fuzz::target(seed.target).expect("a known target");
        let expected = if seed.name.contains("invalid-") {
            Outcome::Rejected
        } else {
            Outcome::Accepted
        };
        let outcome = (target.run)(&seed.bytes);
        if outcome != expected {
            wrong.push(format!("{}/{}: {outcome:?}", seed.target, seed.name));
        }
    }
    assert!(
        wrong.is_empty(),
        "seeds judged otherwise than named:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn dag_cbor() {
    campaign("dag_cbor");
}

#[test]
fn car() {
    campaign("car");
}

#[test]
fn mst_load() {
    campaign("mst_load");
}

#[test]
fn jwt() {
    campaign("jwt");
}

#[test]
fn xrpc_params() {
    campaign("xrpc_params");
}

#[test]
fn firehose_frame() {
    campaign("firehose_frame");
}

/// What the worker is running now, for the watchdog.
#[derive(Default)]
struct Current {
    input: Vec<u8>,
    started: Option<Instant>,
}

/// A failure: a panic (a failed invariant or a bug), or a slow input.
struct Finding {
    kind: &'static str,
    origin: String,
    input: Vec<u8>,
    message: String,
}

#[derive(Default)]
struct Summary {
    replayed: usize,
    mutants: u64,
    accepted: u64,
    rejected: u64,
    pool: usize,
    slowest: Duration,
}

struct Settings {
    target: &'static Target,
    iterations: u64,
    seed: u64,
    slow: Duration,
    trace: Option<PathBuf>,
}

fn campaign(name: &str) {
    corpus_ready();
    let target = aurora_fuzz::target(name).expect("a known target");
    let files = corpus::load(name).expect("reading the corpus");
    assert!(!files.is_empty(), "{name}: the corpus is empty");
    let settings = Settings {
        target,
        iterations: env_u64("AURORA_FUZZ_ITERATIONS").unwrap_or(target.default_iterations),
        seed: env_u64("AURORA_FUZZ_SEED").unwrap_or(DEFAULT_SEED),
        slow: Duration::from_millis(env_u64("AURORA_FUZZ_SLOW_MS").unwrap_or(5_000)),
        trace: std::env::var("AURORA_FUZZ_TRACE")
            .is_ok_and(|v| v == "1")
            .then(|| {
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-current-{name}"))
            }),
    };
    let hang = Duration::from_millis(env_u64("AURORA_FUZZ_HANG_MS").unwrap_or(20_000));
    let (seed, iterations) = (settings.seed, settings.iterations);

    let current = Arc::new(Mutex::new(Current::default()));
    let worker_current = current.clone();
    let started = Instant::now();
    let worker = thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .stack_size(STACK_SIZE)
        .spawn(move || run(&settings, &files, &worker_current))
        .expect("starting the campaign thread");

    // The watchdog: an input still running after `hang` is a finding, and
    // the target may never return.
    while !worker.is_finished() {
        thread::sleep(Duration::from_millis(20));
        let stuck = {
            let current = current.lock().unwrap_or_else(PoisonError::into_inner);
            current
                .started
                .filter(|s| s.elapsed() > hang)
                .map(|_| current.input.clone())
        };
        if let Some(input) = stuck {
            report(
                name,
                &Finding {
                    kind: "hang",
                    origin: format!("the input running then (seed {seed:#x})"),
                    message: format!("still running after {hang:?}"),
                    input,
                },
            );
        }
    }
    let result = worker
        .join()
        .unwrap_or_else(|_| panic!("fuzz {name}: the campaign thread itself panicked"));
    match result {
        Ok(summary) => println!(
            "fuzz {name}: {} corpus files + {} mutants (seed {seed:#x}, {iterations} asked): \
             {} accepted, {} rejected; pool {}; slowest input {:?}; {:.1} s",
            summary.replayed,
            summary.mutants,
            summary.accepted,
            summary.rejected,
            summary.pool,
            summary.slowest,
            started.elapsed().as_secs_f64(),
        ),
        Err(finding) => report(name, &finding),
    }
}

/// Saves `finding` in the corpus and fails the test.
fn report(name: &str, finding: &Finding) -> ! {
    let saved = corpus::save_finding(name, finding.kind, &finding.input)
        .map_or_else(|e| format!("(not saved: {e})"), |p| p.display().to_string());
    let hex = corpus::to_hex(&finding.input);
    panic!(
        "fuzz target {name}: {} on {} ({} bytes), saved as {saved}\n{}\ninput (hex): {hex}",
        finding.kind,
        finding.origin,
        finding.input.len(),
        finding.message,
    );
}

fn run(
    settings: &Settings,
    files: &[(String, Vec<u8>)],
    current: &Mutex<Current>,
) -> Result<Summary, Finding> {
    let target = settings.target;
    let mut summary = Summary::default();
    let mut pool: Vec<Vec<u8>> = Vec::with_capacity(files.len() + MAX_POOL_GROWTH);
    let mut known: HashSet<u64> = HashSet::new();
    for (file, input) in files {
        execute(settings, input, current, &mut summary)
            .map_err(|f| f.with_origin(format!("corpus file {file}")))?;
        summary.replayed += 1;
        if known.insert(fnv1a(input)) {
            pool.push(input.clone());
        }
    }
    let seeds = pool.len();
    let mut mutator = Mutator::new(
        settings.seed ^ fnv1a(target.name.as_bytes()),
        target.flavor,
        target.dictionary,
    );
    for i in 0..settings.iterations {
        // Half the time from the corpus itself, so that grown entries do
        // not crowd out the seeds.
        let base = if mutator.rng().one_in(2) {
            mutator.rng().below(seeds)
        } else {
            mutator.rng().below(pool.len())
        };
        let other = mutator.rng().below(pool.len());
        let input = mutator.mutate(&pool[base], &pool[other]);
        let outcome = execute(settings, &input, current, &mut summary)
            .map_err(|f| f.with_origin(format!("mutant {i} (seed {:#x})", settings.seed)))?;
        summary.mutants += 1;
        // Accepted mutants join the pool; once it is full, one replaces a
        // grown entry now and then, so that the pool keeps moving.
        if outcome == Outcome::Accepted && known.insert(fnv1a(&input)) {
            if pool.len() < seeds + MAX_POOL_GROWTH {
                pool.push(input);
            } else if mutator.rng().one_in(16) {
                let victim = seeds + mutator.rng().below(MAX_POOL_GROWTH);
                pool[victim] = input;
            }
        }
    }
    summary.pool = pool.len();
    Ok(summary)
}

impl Finding {
    fn with_origin(mut self, origin: String) -> Self {
        self.origin = origin;
        self
    }
}

fn execute(
    settings: &Settings,
    input: &[u8],
    current: &Mutex<Current>,
    summary: &mut Summary,
) -> Result<Outcome, Finding> {
    if let Some(path) = &settings.trace {
        std::fs::write(path, input).expect("writing the trace file");
    }
    {
        let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
        current.input.clear();
        current.input.extend_from_slice(input);
        current.started = Some(Instant::now());
    }
    let start = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(|| (settings.target.run)(input)));
    let elapsed = start.elapsed();
    current
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .started = None;
    summary.slowest = summary.slowest.max(elapsed);
    let finding = |kind, message| Finding {
        kind,
        origin: String::new(),
        input: input.to_vec(),
        message,
    };
    match result {
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Err(finding("crash", message))
        }
        Ok(_) if elapsed > settings.slow => Err(finding(
            "slow",
            format!("took {elapsed:?}, over the limit of {:?}", settings.slow),
        )),
        Ok(outcome) => {
            match outcome {
                Outcome::Accepted => summary.accepted += 1,
                Outcome::Rejected => summary.rejected += 1,
            }
            Ok(outcome)
        }
    }
}
