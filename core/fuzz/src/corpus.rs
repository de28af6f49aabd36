//! The checked-in corpus: `core/fuzz/corpus/<target>/<file>`.
//!
//! Files named `seed-*` are generated ([`crate::seeds`]) and rewritten by
//! [`write_seeds`]; files named `crash-*`, `hang-*` or `slow-*` are inputs
//! the campaign found, kept as regression tests; any other file is kept
//! as it is.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::seeds::Seed;

/// Why the corpus could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CorpusError + '_ {
    move |source| CorpusError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The corpus folder of this crate.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// The corpus folder of `target`.
pub fn dir(target: &str) -> PathBuf {
    root().join(target)
}

/// Every file of `target`'s corpus, sorted by name (an absent folder is an
/// empty corpus).
pub fn load(target: &str) -> Result<Vec<(String, Vec<u8>)>, CorpusError> {
    let dir = dir(target);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(&dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        files.push((name, bytes));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// How the checked-in seeds differ from `seeds`: files missing or
/// different, and `seed-*` files no longer generated.
pub fn seed_differences(seeds: &[Seed]) -> Result<Vec<String>, CorpusError> {
    let mut out = Vec::new();
    for seed in seeds {
        let path = dir(seed.target).join(&seed.name);
        match fs::read(&path) {
            Ok(bytes) if bytes == seed.bytes => {}
            Ok(_) => out.push(format!("{}/{} differs", seed.target, seed.name)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.push(format!("{}/{} is missing", seed.target, seed.name));
            }
            Err(e) => return Err(io_error(&path)(e)),
        }
    }
    for target in crate::TARGETS {
        for (name, _) in load(target.name)? {
            let generated = seeds
                .iter()
                .any(|s| s.target == target.name && s.name == name);
            if name.starts_with("seed-") && !generated {
                out.push(format!("{}/{name} is no longer generated", target.name));
            }
        }
    }
    Ok(out)
}

/// Writes `seeds` into the corpus and removes `seed-*` files no longer
/// generated; returns how many files were written or removed.
pub fn write_seeds(seeds: &[Seed]) -> Result<usize, CorpusError> {
    let mut changed = 0;
    for seed in seeds {
        let dir = dir(seed.target);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let path = dir.join(&seed.name);
        if fs::read(&path).ok().as_deref() != Some(seed.bytes.as_slice()) {
            fs::write(&path, &seed.bytes).map_err(io_error(&path))?;
            changed += 1;
        }
    }
    for target in crate::TARGETS {
        for (name, _) in load(target.name)? {
            let generated = seeds
                .iter()
                .any(|s| s.target == target.name && s.name == name);
            if name.starts_with("seed-") && !generated {
                let path = dir(target.name).join(&name);
                fs::remove_file(&path).map_err(io_error(&path))?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The first 16 hex digits of the SHA-256 of `input`: a finding's name.
pub fn short_hash(input: &[u8]) -> String {
    to_hex(&Sha256::digest(input)[..8])
}

/// `bytes` in lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Saves a finding as `<kind>-<hash>` in `target`'s corpus; returns its
/// path.
pub fn save_finding(target: &str, kind: &str, input: &[u8]) -> Result<PathBuf, CorpusError> {
    let dir = dir(target);
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let path = dir.join(format!("{kind}-{}", short_hash(input)));
    fs::write(&path, input).map_err(io_error(&path))?;
    Ok(path)
}
