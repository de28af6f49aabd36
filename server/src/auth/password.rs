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

/// Argon2id with the OWASP-recommended minimum: 19 MiB of memory, 2
/// iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
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

/// Hashes on a blocking thread.
pub async fn hash_password_blocking(password: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| HashError(e.to_string()))?
}

/// Verifies on a blocking thread.
pub async fn verify_password_blocking(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&hash, &password))
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
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password(&a, "correct horse battery staple"));
        assert!(!verify_password(&a, "correct horse battery stapl"));
        assert!(!verify_password(&a, ""));
        assert!(!verify_password("not a hash", "anything"));
        assert!(!verify_password("", ""));
    }

    #[tokio::test]
    async fn blocking_helpers() {
        let h = hash_password_blocking("pw".into()).await.unwrap();
        assert!(verify_password_blocking(h.clone(), "pw".into()).await);
        assert!(!verify_password_blocking(h, "px".into()).await);
    }
}
