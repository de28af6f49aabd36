//! The default [`Mailer`]: mail goes to an outbox file in the data folder.
//!
//! Mails carry one-time tokens (password reset, account deletion, PLC
//! operations), which are credentials; they must not end up in the
//! general log, where they would be readable by anyone who can read logs.
//! So the log gets one line per mail (recipient, subject and where it was
//! written), and the mail itself is appended as one JSON line to
//! `<data_dir>/mail/outbox.jsonl`, created `0600` in a `0700` folder. An
//! operator without SMTP delivers from there; a real deployment plugs in
//! its own [`Mailer`].

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use aurora_core::{Mail, MailError, Mailer};
use chrono::{SecondsFormat, Utc};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;

/// Writes mails to an outbox file (see the module docs).
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    path: PathBuf,
    /// Serialises appends so that lines never interleave.
    lock: Arc<Mutex<()>>,
}

impl OutboxMailer {
    /// The outbox file's name inside the mail folder.
    pub const FILE_NAME: &'static str = "outbox.jsonl";

    /// A mailer writing to `<data_dir>/mail/outbox.jsonl`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("mail").join(Self::FILE_NAME),
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The outbox file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let _guard = self.lock.lock().await;
        if let Some(dir) = self.path.parent() {
            let dir = dir.to_owned();
            tokio::task::spawn_blocking(move || {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
            })
            .await
            .map_err(std::io::Error::other)??;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .await?;
        file.write_all(line).await?;
        file.sync_data().await
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let mut line = json!({
            "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "to": mail.to,
            "subject": mail.subject,
            "text": mail.text,
        })
        .to_string();
        line.push('\n');
        self.append(line.as_bytes())
            .await
            .map_err(|e| MailError(Box::new(e)))?;
        tracing::info!(
            to = %mail.to,
            subject = %mail.subject,
            outbox = %self.path.display(),
            "mail written to the outbox"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[tokio::test]
    async fn appends_one_private_json_line_per_mail() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = OutboxMailer::in_data_dir(dir.path());
        for i in 0..2 {
            mailer
                .send(Mail {
                    to: format!("u{i}@example.com"),
                    subject: "Reset your password".into(),
                    text: format!("token ABCDE-{i}"),
                })
                .await
                .unwrap();
        }
        let text = std::fs::read_to_string(mailer.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["to"], "u1@example.com");
        assert_eq!(lines[1]["text"], "token ABCDE-1");
        let mode = std::fs::metadata(mailer.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(mailer.path().parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }
}
