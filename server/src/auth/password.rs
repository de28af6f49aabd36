//! Password hashing with Argon2id.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`)
//! with a random salt each, so the parameters can be raised later while old
//! hashes keep verifying. Hashing is deliberately slow (tens of
//! milliseconds): run it on a blocking thread, never on the async runtime.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Argon2id with one of OWASP's equivalent minimum settings: 7 MiB of
/// memory, 5 iterations, 1 lane. Of those settings it holds the least
/// memory per run, which bounds the server's memory in a burst of logins.
/// Hashes made with other parameters (such as the 19 MiB, 2 iteration
/// setting used before) still verify: the PHC string carries them.
fn argon2() -> Argon2<'static> {
    let params = Params::new(7 * 1024, 5, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` into a PHC string.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never
/// matches. The comparison inside is constant-time.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// At most one Argon2 run per core at a time. Each holds 7 MiB while it
/// runs: a burst of sign-ups or logins then waits its turn instead of
/// multiplying that memory and starving the cores of other work.
fn hashing_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from))
    })
}

/// Runs `f` on a blocking thread once a hashing permit is free.
async fn run_hashing<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let _permit = hashing_permits()
        .acquire()
        .await
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}

/// Hashes on a blocking thread.
pub async fn hash_password_blocking(password: String) -> Result<String, HashError> {
    run_hashing(move || hash_password(&password))
        .await
        .map_err(HashError)?
}

/// Verifies on a blocking thread.
pub async fn verify_password_blocking(hash: String, password: String) -> bool {
    run_hashing(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse battery staple").unwrap();
        let b = hash_password("correct horse battery staple").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password(&a, "correct horse battery staple"));
        assert!(!verify_password(&a, "correct horse battery stapl"));
        assert!(!verify_password(&a, ""));
        assert!(!verify_password("not a hash", "anything"));
        assert!(!verify_password("", ""));
    }

    #[test]
    fn hashes_made_with_the_earlier_parameters_still_verify() {
        let earlier = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(19 * 1024, 2, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let hash = earlier
            .hash_password(b"hunter22", &salt)
            .unwrap()
            .to_string();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&hash, "hunter22"));
        assert!(!verify_password(&hash, "hunter23"));
    }

    #[tokio::test]
    async fn blocking_helpers() {
        let h = hash_password_blocking("pw".into()).await.unwrap();
        assert!(verify_password_blocking(h.clone(), "pw".into()).await);
        assert!(!verify_password_blocking(h, "px".into()).await);
    }
}
