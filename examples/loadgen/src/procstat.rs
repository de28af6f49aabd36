//! The server's resident memory and CPU time, read from `/proc/<pid>`.

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Clock ticks per second of `/proc/<pid>/stat` times. The kernel reports
/// them in USER_HZ, which is 100 on every Linux ABI in use.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// Resident set size, bytes.
    pub rss: u64,
    /// User + system CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
    pub at: Instant,
}

/// Reads `pid` now; `None` when the process is gone or `/proc` is not there.
pub(crate) fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in `(...)`:
    // state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Sample {
        rss: rss_kb * 1024,
        cpu_ticks: utime + stime,
        at: Instant::now(),
    })
}

/// Reads `pid` once its RSS has settled (two readings half a second apart
/// within 256 KiB, for at most ten seconds): allocators hand memory back
/// a while after a burst (sign-ups hash passwords), which would otherwise
/// be counted against what comes next.
pub(crate) async fn settled(pid: u32) -> Option<Sample> {
    let mut last = sample(pid)?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sample(pid)?;
        if now.rss.abs_diff(last.rss) < 256 * 1024 {
            return Some(now);
        }
        last = now;
    }
    Some(last)
}

/// What a [`Sampler`] saw over its run.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Usage {
    /// Highest RSS seen, bytes.
    pub peak_rss: u64,
    /// Mean RSS over the samples, bytes.
    pub mean_rss: u64,
    /// CPU use over the run, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
}

/// Samples a process every 250 ms until stopped.
pub(crate) struct Sampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Option<Usage>>,
}

impl Sampler {
    pub(crate) fn start(pid: u32) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let first = sample(pid)?;
            let (mut last, mut peak, mut sum, mut n) = (first, first.rss, 0_u128, 0_u128);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stopped.changed() => break,
                }
                let Some(now) = sample(pid) else { break };
                peak = peak.max(now.rss);
                sum += u128::from(now.rss);
                n += 1;
                last = now;
            }
            if let Some(now) = sample(pid) {
                last = now;
            }
            let seconds = last.at.duration_since(first.at).as_secs_f64();
            let cpu_cores = if seconds > 0.0 {
                (last.cpu_ticks - first.cpu_ticks) as f64 / TICKS_PER_SECOND / seconds
            } else {
                0.0
            };
            Some(Usage {
                peak_rss: peak,
                mean_rss: sum
                    .checked_div(n)
                    .map_or(first.rss, |m| u64::try_from(m).unwrap_or(u64::MAX)),
                cpu_cores,
            })
        });
        Self { stop, task }
    }

    /// Stops sampling; `None` when the process could not be read.
    pub(crate) async fn finish(self) -> Option<Usage> {
        let _ = self.stop.send(true);
        self.task.await.ok().flatten()
    }
}
