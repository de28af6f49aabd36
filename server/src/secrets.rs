//! Server secrets: the session JWT secret and the PLC rotation key.
//!
//! A secret given in the configuration is used as is. Otherwise it is read
//! from `<data_dir>/secrets/<name>`, or generated there on first start: the
//! folder is created `0700`, each file `0600`, written to a temporary file and
//! renamed so a crash never leaves half a key. Secret values are never logged;
//! only the file path is.
//!
//! Per-account repo signing keys are written with the same
//! [`write_secret_file`] when accounts are created.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Config, Secret};

/// The secrets the server runs with.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// HS256 secret for session tokens.
    pub jwt_secret: Secret,
    /// secp256k1 PLC rotation key, as 64 hex characters.
    pub plc_rotation_key: Secret,
}

/// Why secrets could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Reading or writing a secret file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A configured or stored secret is malformed.
    #[error("{key}: {message}")]
    Invalid {
        /// Which secret (config key or file).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Secrets {
    /// Loads configured secrets, or reads/generates them under the data folder.
    pub fn load_or_generate(config: &Config) -> Result<Self, SecretsError> {
        let dir = config.data_dir.join("secrets");
        let jwt_secret = match &config.jwt_secret {
            Some(s) if s.expose().len() < 32 => {
                return Err(SecretsError::Invalid {
                    key: "AURORA_JWT_SECRET".into(),
                    message: "must be at least 32 characters".into(),
                });
            }
            Some(s) => s.clone(),
            None => read_or_create(&dir, "jwt_secret", || {
                hex::encode(rand::random::<[u8; 32]>())
            })?,
        };
        let plc_rotation_key = match &config.plc_rotation_key {
            Some(s) => s.clone(),
            None => read_or_create(&dir, "plc_rotation_key", generate_k256_hex)?,
        };
        validate_k256_hex(&plc_rotation_key).map_err(|message| SecretsError::Invalid {
            key: if config.plc_rotation_key.is_some() {
                "AURORA_PLC_ROTATION_KEY".into()
            } else {
                dir.join("plc_rotation_key").display().to_string()
            },
            message,
        })?;
        Ok(Self {
            jwt_secret,
            plc_rotation_key,
        })
    }
}

/// A new random secp256k1 private key, hex encoded.
fn generate_k256_hex() -> String {
    loop {
        let bytes: [u8; 32] = rand::random();
        // Nearly every 32-byte string is a valid scalar; retry the rest.
        if k256::SecretKey::from_slice(&bytes).is_ok() {
            return hex::encode(bytes);
        }
    }
}

fn validate_k256_hex(secret: &Secret) -> Result<(), String> {
    let bytes = hex::decode(secret.expose().trim()).map_err(|_| "not hex".to_owned())?;
    k256::SecretKey::from_slice(&bytes)
        .map(|_| ())
        .map_err(|_| "not a valid secp256k1 private key (32 bytes, hex)".to_owned())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_or_create(
    dir: &Path,
    name: &str,
    generate: impl FnOnce() -> String,
) -> Result<Secret, SecretsError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(value) => return Ok(Secret::new(value.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    let value = generate();
    write_secret_file(dir, name, value.as_bytes())?;
    tracing::info!(path = %path.display(), "generated a new secret");
    Ok(Secret::new(value))
}

/// Writes `contents` to `dir/name` with mode 0600 (the folder 0700),
/// atomically: a temporary file is written, synced and renamed.
pub fn write_secret_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), SecretsError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let first = Secrets::load_or_generate(&config).unwrap();
        let second = Secrets::load_or_generate(&config).unwrap();
        assert_eq!(first.jwt_secret, second.jwt_secret);
        assert_eq!(first.plc_rotation_key, second.plc_rotation_key);
        for name in ["jwt_secret", "plc_rotation_key"] {
            let meta = std::fs::metadata(dir.path().join("secrets").join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
        let meta = std::fs::metadata(dir.path().join("secrets")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert!(!format!("{first:?}").contains(first.jwt_secret.expose()));
    }

    #[test]
    fn configured_secrets_win_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            jwt_secret: Some(Secret::new("x".repeat(40))),
            plc_rotation_key: Some(Secret::new("zz")),
            ..Config::default()
        };
        let err = Secrets::load_or_generate(&config).unwrap_err();
        assert!(
            err.to_string().starts_with("AURORA_PLC_ROTATION_KEY"),
            "{err}"
        );
        config.plc_rotation_key = Some(Secret::new(generate_k256_hex()));
        let s = Secrets::load_or_generate(&config).unwrap();
        assert_eq!(s.jwt_secret.expose(), "x".repeat(40));
        assert!(!dir.path().join("secrets").join("jwt_secret").exists());
    }
}
