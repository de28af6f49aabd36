//! The [`Mailer`] plugin trait: how the PDS sends email (password resets,
//! email confirmation, account deletion and PLC operation tokens).
//!
//! The server ships a mailer that writes each mail to an outbox file in the
//! data folder (for development and for operators who deliver mail another
//! way); an SMTP or provider-API mailer is a plugin implementing this trait.

use std::fmt;

use async_trait::async_trait;

use crate::store::BackendError;

/// One email.
///
/// The body may carry a one-time token, which is a credential: `Debug`
/// prints the recipient and subject only, so a mail never reaches a log by
/// accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
}

impl fmt::Debug for Mail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a mail could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("mail delivery failed: {0}")]
pub struct MailError(pub BackendError);

/// Sends email on behalf of the PDS.
///
/// `send` returns once the mail is handed over (queued or written); the
/// request that triggered it fails with an internal error when it returns
/// `Err`, so that a user is never told "check your inbox" for a mail that
/// was lost.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends `mail`.
    async fn send(&self, mail: Mail) -> Result<(), MailError>;
}
