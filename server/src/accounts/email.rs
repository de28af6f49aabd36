//! Email: address checks, and the one-time tokens mailed for email
//! confirmation, email change, password reset, account deletion and PLC
//! operations.
//!
//! A token is ten random base32 characters (`ABCDE-FGHIJ`, 50 bits), one
//! per account and purpose (a new request replaces the old one), valid for
//! [`TOKEN_LIFETIME`] and used up by its first successful use. It travels
//! only in the mail; it is never logged.

use aurora_core::store::{Account, AccountLookup, EmailToken, EmailTokenPurpose};
use aurora_core::syntax::Did;
use aurora_core::{Mail, XrpcError};
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng as _;

use super::{AccountManager, bad_request, internal, store_error};

/// How long an emailed token stays valid.
pub const TOKEN_LIFETIME: TimeDelta = TimeDelta::minutes(15);

/// Longest accepted email address (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

/// Checks an email address's shape (one `@`, a local part, a domain with a
/// dot, no spaces) and returns it normalised (trimmed, lower-cased).
pub fn check_email(email: &str) -> Result<String, XrpcError> {
    let email = aurora_core::store::normalize_email(email);
    let valid = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        });
    if valid {
        Ok(email)
    } else {
        Err(XrpcError::invalid_request(
            "this is not a valid email address",
        ))
    }
}

/// A new random token, `XXXXX-XXXXX`.
pub fn generate_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rng();
    let mut token = String::with_capacity(11);
    for i in 0..10 {
        if i == 5 {
            token.push('-');
        }
        token.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    token
}

/// What is stored for a token: the SHA-256 (hex) of the token as typed
/// (trimmed, upper-cased). The token itself exists only in the mail, so a
/// database dump or statement log holds nothing usable.
fn token_digest(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(
        token.trim().to_ascii_uppercase().as_bytes(),
    ))
}

/// What each mail says.
fn mail_text(purpose: EmailTokenPurpose, account: &Account, token: &str) -> (String, String) {
    let handle = &account.handle;
    let minutes = TOKEN_LIFETIME.num_minutes();
    let (subject, action) = match purpose {
        EmailTokenPurpose::ConfirmEmail => ("Confirm your email", "confirm this email address"),
        EmailTokenPurpose::UpdateEmail => ("Change your email", "change your account's email"),
        EmailTokenPurpose::ResetPassword => ("Reset your password", "reset your password"),
        EmailTokenPurpose::DeleteAccount => ("Delete your account", "delete your account"),
        EmailTokenPurpose::PlcOperation => (
            "Confirm an identity change",
            "confirm a change to your identity (DID document)",
        ),
    };
    let text = format!(
        "Hello @{handle},\n\nUse this code to {action}:\n\n    {token}\n\n\
         It is valid for {minutes} minutes. If you did not ask for it, ignore this mail.\n"
    );
    (subject.to_owned(), text)
}

/// Whether a token requested at `requested_at` is still valid at `now`.
fn fresh(requested_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - requested_at <= TOKEN_LIFETIME
}

fn invalid_token() -> XrpcError {
    bad_request("InvalidToken", "Token is invalid")
}

fn expired_token() -> XrpcError {
    bad_request("ExpiredToken", "Token is expired")
}

impl AccountManager {
    /// Mails `account` a new token for `purpose`.
    pub async fn send_email_token(
        &self,
        account: &Account,
        purpose: EmailTokenPurpose,
    ) -> Result<(), XrpcError> {
        let to = account
            .email
            .clone()
            .ok_or_else(|| XrpcError::invalid_request("the account has no email address"))?;
        let token = generate_token();
        self.context()
            .accounts
            .put_email_token(EmailToken {
                did: account.did.clone(),
                purpose,
                token: token_digest(&token),
                requested_at: Utc::now(),
            })
            .await
            .map_err(store_error)?;
        let (subject, text) = mail_text(purpose, account, &token);
        self.context()
            .mailer
            .send(Mail { to, subject, text })
            .await
            .map_err(|e| internal("cannot send mail", &e))
    }

    /// Uses up `did`'s token for `purpose`: 400 `InvalidToken` when it does
    /// not match, `ExpiredToken` when it is too old.
    pub async fn use_email_token(
        &self,
        did: &Did,
        purpose: EmailTokenPurpose,
        token: &str,
    ) -> Result<(), XrpcError> {
        let requested_at = self
            .context()
            .accounts
            .take_email_token(did, purpose, &token_digest(token))
            .await
            .map_err(store_error)?
            .ok_or_else(invalid_token)?;
        if fresh(requested_at, Utc::now()) {
            Ok(())
        } else {
            Err(expired_token())
        }
    }

    /// `requestPasswordReset`: mails a reset token when an account has this
    /// email, and answers the same either way.
    pub async fn request_password_reset(&self, email: &str) -> Result<(), XrpcError> {
        let Ok(email) = check_email(email) else {
            return Ok(());
        };
        let account = self
            .context()
            .accounts
            .get_account(AccountLookup::Email(&email))
            .await
            .map_err(store_error)?;
        if let Some(account) = account {
            self.send_email_token(&account, EmailTokenPurpose::ResetPassword)
                .await?;
        }
        Ok(())
    }

    /// `resetPassword`: sets a new password with a mailed reset token; every
    /// session of the account ends.
    pub async fn reset_password(&self, token: &str, password: &str) -> Result<(), XrpcError> {
        super::session::check_new_password(password)?;
        let (did, requested_at) = self
            .context()
            .accounts
            .take_email_token_by_value(EmailTokenPurpose::ResetPassword, &token_digest(token))
            .await
            .map_err(store_error)?
            .ok_or_else(invalid_token)?;
        if !fresh(requested_at, Utc::now()) {
            return Err(expired_token());
        }
        self.set_password(&did, password).await
    }

    /// `confirmEmail`: marks the email confirmed with a mailed token.
    pub async fn confirm_email(
        &self,
        account: &Account,
        email: &str,
        token: &str,
    ) -> Result<(), XrpcError> {
        let email = check_email(email)?;
        if account.email.as_deref() != Some(email.as_str()) {
            return Err(bad_request(
                "InvalidEmail",
                "this is not the account's email address",
            ));
        }
        self.use_email_token(&account.did, EmailTokenPurpose::ConfirmEmail, token)
            .await?;
        self.context()
            .accounts
            .confirm_email(&account.did, Utc::now())
            .await
            .map_err(store_error)
    }

    /// `updateEmail`: changes the email. Once the current address is
    /// confirmed, a token mailed to it is required.
    pub async fn update_email(
        &self,
        account: &Account,
        email: &str,
        token: Option<&str>,
    ) -> Result<(), XrpcError> {
        let email = check_email(email)?;
        if account.email_confirmed_at.is_some() {
            let token = token.ok_or_else(|| {
                bad_request(
                    "TokenRequired",
                    "confirmation token required: request one with requestEmailUpdate",
                )
            })?;
            self.use_email_token(&account.did, EmailTokenPurpose::UpdateEmail, token)
                .await?;
        }
        self.context()
            .accounts
            .update_email(&account.did, Some(&email))
            .await
            .map_err(|e| match e {
                aurora_core::StoreError::AlreadyExists { .. } => {
                    XrpcError::invalid_request("this email address cannot be used")
                }
                other => store_error(other),
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn email_shapes() {
        assert_eq!(
            check_email(" Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@c.com",
            "a@.example.com",
            "a@example..com",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_random_and_normalised() {
        let t = generate_token();
        assert_eq!(t.len(), 11);
        assert_eq!(&t[5..6], "-");
        assert_ne!(t, generate_token());
        assert_eq!(token_digest(" abcde-fghij\n"), token_digest("ABCDE-FGHIJ"));
        assert_ne!(token_digest("ABCDE-FGHIJ"), token_digest("ABCDE-FGHIK"));
    }

    #[test]
    fn tokens_expire() {
        let now = Utc::now();
        assert!(fresh(now - TOKEN_LIFETIME, now));
        assert!(!fresh(now - TOKEN_LIFETIME - TimeDelta::seconds(1), now));
    }
}
