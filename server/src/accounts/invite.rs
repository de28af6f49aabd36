//! Invite codes: made by the operator (or for accounts), each good for a
//! number of sign-ups.

use aurora_core::XrpcError;
use aurora_core::store::{InviteCode, NewInviteCode};
use rand::Rng as _;

use super::{AccountManager, store_error};

/// Most codes one call may create.
pub const MAX_CODES_PER_CALL: usize = 1000;

/// `<hostname with dashes>-xxxxx-xxxxx`: the host says where the code
/// works; ten random base32 characters make it unguessable.
pub fn generate_code(hostname: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let mut part = || {
        (0..5)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect::<String>()
    };
    let (a, b) = (part(), part());
    format!("{}-{a}-{b}", hostname.replace('.', "-"))
}

impl AccountManager {
    /// Creates `count` codes with `uses` uses each for every account in
    /// `for_accounts` (the operator's own codes when empty).
    pub async fn create_invite_codes(
        &self,
        count: usize,
        uses: i32,
        for_accounts: &[String],
        created_by: &str,
    ) -> Result<Vec<InviteCode>, XrpcError> {
        if uses < 1 {
            return Err(XrpcError::invalid_request("useCount must be at least 1"));
        }
        let owners: Vec<String> = if for_accounts.is_empty() {
            vec!["admin".to_owned()]
        } else {
            for_accounts.to_vec()
        };
        if count == 0 || count.saturating_mul(owners.len()) > MAX_CODES_PER_CALL {
            return Err(XrpcError::invalid_request(format!(
                "between 1 and {MAX_CODES_PER_CALL} codes per call"
            )));
        }
        let hostname = &self.settings().hostname;
        let codes = owners
            .iter()
            .flat_map(|owner| {
                (0..count).map(move |_| NewInviteCode {
                    code: generate_code(hostname),
                    available_uses: uses,
                    for_account: owner.clone(),
                    created_by: created_by.to_owned(),
                })
            })
            .collect();
        self.context()
            .accounts
            .create_invite_codes(codes)
            .await
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_name_the_host_and_are_random() {
        let code = generate_code("pds.example.com");
        assert!(code.starts_with("pds-example-com-"), "{code}");
        assert_eq!(code.len(), "pds-example-com-".len() + 11);
        assert_ne!(code, generate_code("pds.example.com"));
    }
}
