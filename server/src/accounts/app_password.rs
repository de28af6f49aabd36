//! App passwords: separate passwords for third-party clients. Sessions
//! opened with one cannot manage the account's credentials.

use aurora_core::XrpcError;
use aurora_core::store::AppPassword;
use aurora_core::syntax::Did;
use chrono::Utc;
use rand::Rng as _;

use super::{AccountManager, internal, store_error};
use crate::auth::password::hash_password_blocking;

/// Characters of generated app passwords: lower-case base32, easy to type.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Four groups of four characters: `xxxx-xxxx-xxxx-xxxx` (80 bits).
const GROUPS: usize = 4;
const GROUP_LEN: usize = 4;
/// Longest app password name.
pub const MAX_NAME_LEN: usize = 64;

/// A new random app password.
pub fn generate() -> String {
    let mut rng = rand::rng();
    (0..GROUPS)
        .map(|_| {
            (0..GROUP_LEN)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Whether `password` has the shape of a generated app password.
pub fn looks_like_app_password(password: &str) -> bool {
    password.len() == GROUPS * GROUP_LEN + GROUPS - 1
        && password.split('-').count() == GROUPS
        && password
            .split('-')
            .all(|g| g.len() == GROUP_LEN && g.bytes().all(|b| ALPHABET.contains(&b)))
}

/// A created app password, shown to the user once.
#[derive(Clone)]
pub struct CreatedAppPassword {
    /// The stored record (name, privileged, creation time).
    pub app_password: AppPassword,
    /// The password itself.
    pub password: String,
}

impl std::fmt::Debug for CreatedAppPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAppPassword")
            .field("app_password", &self.app_password)
            .finish_non_exhaustive()
    }
}

impl AccountManager {
    /// Creates an app password called `name`.
    pub async fn create_app_password(
        &self,
        did: &Did,
        name: &str,
        privileged: bool,
    ) -> Result<CreatedAppPassword, XrpcError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(XrpcError::invalid_request(format!(
                "an app password name is 1 to {MAX_NAME_LEN} characters"
            )));
        }
        let password = generate();
        let password_hash = hash_password_blocking(password.clone())
            .await
            .map_err(|e| internal("cannot hash an app password", &e))?;
        let app_password = AppPassword {
            did: did.clone(),
            name: name.to_owned(),
            password_hash,
            privileged,
            created_at: Utc::now(),
        };
        self.context()
            .accounts
            .create_app_password(app_password.clone())
            .await
            .map_err(|e| match e {
                aurora_core::StoreError::AlreadyExists { .. } => {
                    XrpcError::invalid_request("an app password with this name already exists")
                }
                other => store_error(other),
            })?;
        Ok(CreatedAppPassword {
            app_password,
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_have_the_app_password_shape() {
        for _ in 0..100 {
            let p = generate();
            assert!(looks_like_app_password(&p), "{p}");
        }
        assert_ne!(generate(), generate());
        assert!(!looks_like_app_password("hunter22-and-more"));
        assert!(!looks_like_app_password("abcd-efgh-ijkl-mno1"));
    }
}
