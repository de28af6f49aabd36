//! # aurora-sink-jsonl
//!
//! An event sink that appends events, one JSON object per line (the JSON
//! form of `aurora_core::event::json`), to files in a folder: for audit
//! trails and simple pipelines (`tail -F`, `jq`, log shippers).
//!
//! ```toml
//! [[sinks]]
//! kind = "jsonl"
//! name = "audit"
//! path = "events"            # a folder; relative to data_dir
//! prefix = "events"          # file names: <prefix>-<YYYYMMDD>-<first seq>.jsonl
//! max_bytes = 104857600      # start a new file past this size (default 100 MB)
//! daily = true               # and at each UTC day (default true)
//! fsync = "batch"            # "batch" (default) or "none"
//! records = false            # include record bodies (ops[].record)
//! ```
//!
//! **Files.** Events go to `<prefix>-<YYYYMMDD>-<seq>.jsonl`, where the date
//! is the UTC day the file was started and `<seq>` (20 digits) the first
//! event in it, so names sort in event order. A new file is started when
//! the current one has reached `max_bytes` (a batch is never split, so a
//! file can pass the limit by one batch) and, with `daily`, when the UTC
//! day changes. After a restart the newest file is appended to if it is
//! still current.
//!
//! **Durability.** With `fsync = "batch"`, each batch is written and the
//! file synced to disk before the batch is acknowledged, so an
//! acknowledged event survives a power loss. With `"none"` the operating
//! system writes when it wants: faster, but a crash of the machine can lose
//! acknowledged events. A line cut short by a crash mid-write is removed
//! when the file is next opened (its batch was not acknowledged, so it is
//! written again). As with every sink, delivery is at least once: after a
//! restart the last batch may appear twice; de-duplicate on `seq`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aurora_core::event::{JsonEvent, JsonOptions, SeqEvent};
use aurora_core::sink::{ConfigurableSink, EventSink, SinkConfigError, SinkEnv, SinkError};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;

/// When written data is synced to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// After every batch, before it is acknowledged.
    #[default]
    Batch,
    /// Never explicitly.
    None,
}

/// The settings of a `jsonl` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// The folder of the files (created if missing); relative to the data folder.
    pub path: PathBuf,
    /// File name prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Size past which a new file is started.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Start a new file each UTC day.
    #[serde(default = "default_daily")]
    pub daily: bool,
    /// When to sync to disk.
    #[serde(default)]
    pub fsync: Fsync,
    /// Include created and updated records' bodies.
    #[serde(default)]
    pub records: bool,
}

fn default_prefix() -> String {
    "events".to_owned()
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_daily() -> bool {
    true
}

/// The file being appended to.
#[derive(Debug)]
struct Current {
    file: File,
    day: NaiveDate,
    len: u64,
}

/// The `jsonl` sink.
#[derive(Debug)]
pub struct JsonlSink {
    name: String,
    dir: PathBuf,
    config: JsonlConfig,
    current: Arc<Mutex<Option<Current>>>,
}

impl JsonlSink {
    /// A sink named `name` writing into `dir` (absolute or relative to the
    /// working folder) with `config`'s other settings.
    pub fn new(name: &str, dir: PathBuf, config: JsonlConfig) -> Result<Self, SinkConfigError> {
        let prefix_ok = !config.prefix.is_empty()
            && config
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !prefix_ok {
            return Err(SinkConfigError::new(
                "prefix: must be letters, digits, '.', '_' or '-'",
            ));
        }
        if config.max_bytes == 0 {
            return Err(SinkConfigError::new("max_bytes: must be greater than 0"));
        }
        Ok(Self {
            name: name.to_owned(),
            dir,
            config,
            current: Arc::new(Mutex::new(None)),
        })
    }

    /// The folder the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl ConfigurableSink for JsonlSink {
    const KIND: &'static str = "jsonl";
    type Config = JsonlConfig;

    fn from_config(
        name: &str,
        config: JsonlConfig,
        env: &SinkEnv,
    ) -> Result<Self, SinkConfigError> {
        Self::new(name, env.resolve(&config.path), config)
    }
}

#[async_trait]
impl EventSink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, events: &[SeqEvent]) -> Result<(), SinkError> {
        let Some(first) = events.first().map(|e| e.seq) else {
            return Ok(());
        };
        let options = JsonOptions {
            records: self.config.records,
        };
        let mut lines = Vec::new();
        for event in events {
            let json = JsonEvent::from_event(event, options).map_err(SinkError::new)?;
            serde_json::to_writer(&mut lines, &json).map_err(SinkError::new)?;
            lines.push(b'\n');
        }
        let writer = Writer {
            dir: self.dir.clone(),
            prefix: self.config.prefix.clone(),
            max_bytes: self.config.max_bytes,
            daily: self.config.daily,
            fsync: self.config.fsync,
        };
        let current = self.current.clone();
        tokio::task::spawn_blocking(move || {
            let mut current = current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            writer.append(&mut current, first, &lines)
        })
        .await
        .map_err(SinkError::new)?
        .map_err(|e| SinkError::new(format!("{}: {e}", self.dir.display())))
    }
}

/// The file operations, run on a blocking thread.
struct Writer {
    dir: PathBuf,
    prefix: String,
    max_bytes: u64,
    daily: bool,
    fsync: Fsync,
}

impl Writer {
    fn append(
        &self,
        current: &mut Option<Current>,
        first_seq: i64,
        lines: &[u8],
    ) -> io::Result<()> {
        let today = Utc::now().date_naive();
        let stale = current.as_ref().is_none_or(|c| self.is_full(c, today));
        if stale {
            *current = None;
            *current = Some(self.open(today, first_seq)?);
        }
        let Some(file) = current.as_mut() else {
            return Err(io::Error::other("no file open"));
        };
        if let Err(e) = file.file.write_all(lines) {
            // A partial write: reopen (and trim the partial line) next time.
            *current = None;
            return Err(e);
        }
        file.len += lines.len() as u64;
        if self.fsync == Fsync::Batch
            && let Err(e) = file.file.sync_data()
        {
            *current = None;
            return Err(e);
        }
        Ok(())
    }

    fn is_full(&self, current: &Current, today: NaiveDate) -> bool {
        current.len >= self.max_bytes || (self.daily && current.day != today)
    }

    /// The newest file if it is still current, else a new one.
    fn open(&self, today: NaiveDate, first_seq: i64) -> io::Result<Current> {
        fs::create_dir_all(&self.dir)?;
        if let Some((path, day)) = self.newest()? {
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            let len = trim_partial_line(&mut file)?;
            let current = Current { file, day, len };
            if !self.is_full(&current, today) {
                return Ok(current);
            }
        }
        let name = format!(
            "{}-{}-{:020}.jsonl",
            self.prefix,
            today.format("%Y%m%d"),
            first_seq.max(0)
        );
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.dir.join(name))?;
        if self.fsync == Fsync::Batch {
            // The new directory entry must survive too.
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(Current {
            file,
            day: today,
            len: 0,
        })
    }

    /// The newest file of this sink, with the day in its name.
    fn newest(&self) -> io::Result<Option<(PathBuf, NaiveDate)>> {
        let mut newest: Option<(String, NaiveDate)> = None;
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let Some(day) = self.day_of(&name) else {
                continue;
            };
            if newest.as_ref().is_none_or(|(n, _)| *n < name) {
                newest = Some((name, day));
            }
        }
        Ok(newest.map(|(name, day)| (self.dir.join(name), day)))
    }

    /// The day in a file name of this sink (`<prefix>-<YYYYMMDD>-<seq>.jsonl`).
    fn day_of(&self, name: &str) -> Option<NaiveDate> {
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix('-')?;
        let (day, seq) = rest.strip_suffix(".jsonl")?.split_once('-')?;
        if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        NaiveDate::parse_from_str(day, "%Y%m%d").ok()
    }
}

/// Cuts a line left unfinished by a crash off the end of `file`, and
/// positions it at the end; returns its length.
fn trim_partial_line(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let size = usize::try_from(end - start).unwrap_or(chunk.len());
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..size])?;
        if let Some(i) = chunk[..size].iter().rposition(|b| *b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        file.set_len(end)?;
    }
    file.seek(SeekFrom::Start(end))?;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use aurora_core::event::{EventType, IdentityBody};
    use aurora_core::syntax::{Datetime, Did, Handle};

    use super::*;

    fn events(from: i64, n: i64) -> Vec<SeqEvent> {
        let did = Did::parse("did:plc:jsonl").unwrap();
        (from..from + n)
            .map(|seq| SeqEvent {
                seq,
                did: did.clone(),
                event_type: EventType::Identity,
                time: Utc::now(),
                payload: IdentityBody {
                    did: did.clone(),
                    handle: Some(Handle::parse("a.test").unwrap()),
                    time: Datetime::now(),
                }
                .to_payload(),
            })
            .collect()
    }

    fn config(max_bytes: u64) -> JsonlConfig {
        JsonlConfig {
            path: PathBuf::from("events"),
            prefix: default_prefix(),
            max_bytes,
            daily: true,
            fsync: Fsync::Batch,
            records: false,
        }
    }

    fn files(dir: &Path) -> Vec<(String, Vec<i64>)> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let text = fs::read_to_string(dir.join(&name)).unwrap();
                let seqs = text
                    .lines()
                    .map(|l| serde_json::from_str::<JsonEvent>(l).unwrap().seq)
                    .collect();
                (name, seqs)
            })
            .collect()
    }

    #[tokio::test]
    async fn events_go_to_files_rotated_by_size() {
        let tmp = tempfile::tempdir().unwrap();
        let env = SinkEnv::new(tmp.path());
        // One identity event is about 150 bytes: two batches of 3 per file.
        let sink = JsonlSink::from_config("audit", config(600), &env).unwrap();
        assert_eq!(sink.dir(), tmp.path().join("events"));
        for batch in 0..5 {
            sink.deliver(&events(1 + batch * 3, 3)).await.unwrap();
        }
        let found = files(sink.dir());
        let today = Utc::now().format("%Y%m%d").to_string();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, format!("events-{today}-{:020}.jsonl", 1));
        assert_eq!(found[0].1, (1..=6).collect::<Vec<_>>());
        assert_eq!(found[1].0, format!("events-{today}-{:020}.jsonl", 7));
        assert_eq!(found[2].1, (13..=15).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_restart_appends_to_the_newest_file_without_a_partial_line() {
        let tmp = tempfile::tempdir().unwrap();
        let env = SinkEnv::new(tmp.path());
        let sink = JsonlSink::from_config("audit", config(1 << 20), &env).unwrap();
        sink.deliver(&events(1, 2)).await.unwrap();
        let (name, _) = files(sink.dir()).remove(0);
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(sink.dir().join(&name))
            .unwrap();
        f.write_all(b"{\"seq\":3,\"ti").unwrap();
        drop(sink);
        let sink = JsonlSink::from_config("audit", config(1 << 20), &env).unwrap();
        sink.deliver(&events(3, 2)).await.unwrap();
        assert_eq!(files(sink.dir()), [(name, vec![1, 2, 3, 4])]);
    }

    #[test]
    fn bad_settings_and_foreign_files() {
        let env = SinkEnv::new("/data");
        let mut c = config(0);
        assert!(
            JsonlSink::from_config("a", c.clone(), &env)
                .unwrap_err()
                .0
                .starts_with("max_bytes")
        );
        c.max_bytes = 1;
        c.prefix = "a/b".into();
        assert!(
            JsonlSink::from_config("a", c, &env)
                .unwrap_err()
                .0
                .starts_with("prefix")
        );
        let writer = Writer {
            dir: PathBuf::new(),
            prefix: "events".into(),
            max_bytes: 1,
            daily: true,
            fsync: Fsync::None,
        };
        assert!(
            writer
                .day_of("events-20261206-00000000000000000001.jsonl")
                .is_some()
        );
        for foreign in [
            "events-20261206-1.jsonl",
            "other-20261206-00000000000000000001.jsonl",
            "events-2026120x-00000000000000000001.jsonl",
            "events-20261206-00000000000000000001.json",
        ] {
            assert!(writer.day_of(foreign).is_none(), "{foreign}");
        }
    }
}
