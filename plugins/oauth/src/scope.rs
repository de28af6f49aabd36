//! OAuth scopes as the ATProto profile defines them: `atproto` (required
//! in every grant), the transitional scopes (`transition:generic`,
//! `transition:chat.bsky`, `transition:email`), and granular permissions
//! (`repo:`, `blob:`, `rpc:`, `account:`, `identity:`, `include:`).
//!
//! [`Scopes::parse`] reads a space-separated scope string; the `allows_*`
//! methods answer what an endpoint asks before it acts. Permission sets
//! (`include:`) are kept by name and grant nothing until resolved, which
//! needs their published lexicon.

use std::collections::BTreeSet;

/// What a record write does, as `repo:` permissions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepoAction {
    /// A new record.
    Create,
    /// A record replaced.
    Update,
    /// A record removed.
    Delete,
}

impl RepoAction {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// Account attributes `account:` permissions cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccountAttr {
    /// The email address and whether it is confirmed.
    Email,
    /// The repository as a whole (importing a CAR).
    Repo,
    /// Activation state.
    Status,
}

/// One granular permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// Writes to records of `collections` (`*`: any), for `actions`.
    Repo {
        /// NSIDs, or `*`.
        collections: BTreeSet<String>,
        /// The actions allowed.
        actions: BTreeSet<RepoAction>,
    },
    /// Uploading blobs whose type matches `accept` (`image/*`, `*/*`).
    Blob {
        /// A MIME type or a glob.
        accept: String,
    },
    /// Calling (or proxying to) `lxm` (`*`: any) at `aud` (`did#service`, or `*`).
    Rpc {
        /// A method NSID, or `*`.
        lxm: String,
        /// A service reference, or `*`.
        aud: String,
    },
    /// Reading (or, with `manage`, changing) an account attribute.
    Account {
        /// The attribute.
        attr: AccountAttr,
        /// Whether it may be changed, not only read.
        manage: bool,
    },
    /// Changing the handle (`handle`), or the whole identity (`*`).
    Identity {
        /// `handle` or `*`.
        attr: String,
    },
    /// A permission set, by NSID, not resolved here.
    Include {
        /// The set's NSID.
        nsid: String,
        /// The `aud` given to its `rpc` entries, if any.
        aud: Option<String>,
    },
}

/// The transitional scopes, from before granular permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transition {
    /// `transition:generic`: about what an app password may do.
    Generic,
    /// `transition:chat.bsky`: `chat.bsky.*` methods (with `Generic`).
    ChatBsky,
    /// `transition:email`: the account's email in `getSession`.
    Email,
}

/// A parsed scope string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    /// `atproto` was there.
    pub atproto: bool,
    /// The transitional scopes given.
    pub transition: BTreeSet<Transition>,
    /// Granular permissions.
    pub permissions: BTreeSet<Permission>,
    /// Entries not understood (ignored, as the profile says).
    pub unknown: Vec<String>,
}

impl Scopes {
    /// Reads a space-separated scope string. Unknown or malformed entries
    /// are set aside in [`unknown`](Self::unknown), not fatal: the profile
    /// lets servers ignore what they do not support.
    pub fn parse(scope: &str) -> Self {
        let mut out = Self::default();
        for entry in scope.split(' ').filter(|e| !e.is_empty()) {
            match entry {
                "atproto" => out.atproto = true,
                "transition:generic" => {
                    out.transition.insert(Transition::Generic);
                }
                "transition:chat.bsky" => {
                    out.transition.insert(Transition::ChatBsky);
                }
                "transition:email" => {
                    out.transition.insert(Transition::Email);
                }
                _ => match parse_permission(entry) {
                    Some(p) => {
                        out.permissions.insert(p);
                    }
                    None => out.unknown.push(entry.to_owned()),
                },
            }
        }
        out
    }

    /// Whether the transitional scope `t` was given.
    pub fn has(&self, t: Transition) -> bool {
        self.transition.contains(&t)
    }

    /// Whether a record write of `action` to `collection` is allowed.
    pub fn allows_repo(&self, collection: &str, action: RepoAction) -> bool {
        self.has(Transition::Generic)
            || self.permissions.iter().any(|p| match p {
                Permission::Repo {
                    collections,
                    actions,
                } => {
                    (collections.contains("*") || collections.contains(collection))
                        && actions.contains(&action)
                }
                _ => false,
            })
    }

    /// Whether uploading a blob of type `mime` is allowed.
    pub fn allows_blob(&self, mime: &str) -> bool {
        self.has(Transition::Generic)
            || self.permissions.iter().any(|p| match p {
                Permission::Blob { accept } => mime_matches(accept, mime),
                _ => false,
            })
    }

    /// Whether calling `lxm` at the service `aud` (`did#service`) is
    /// allowed. `transition:generic` covers every method but `chat.bsky.*`,
    /// which `transition:chat.bsky` adds (only together with generic: the
    /// profile says it does not work alone).
    pub fn allows_rpc(&self, lxm: &str, aud: &str) -> bool {
        let chat = lxm.starts_with("chat.bsky.");
        (self.has(Transition::Generic) && (!chat || self.has(Transition::ChatBsky)))
            || self.permissions.iter().any(|p| match p {
                Permission::Rpc { lxm: l, aud: a } => {
                    (l == "*" || l == lxm) && (a == "*" || a == aud)
                }
                _ => false,
            })
    }

    /// Whether the account attribute may be read (`manage` false) or
    /// changed (`manage` true). `transition:email` reads the email.
    pub fn allows_account(&self, attr: AccountAttr, manage: bool) -> bool {
        (attr == AccountAttr::Email && !manage && self.has(Transition::Email))
            || self.permissions.iter().any(|p| match p {
                Permission::Account { attr: a, manage: m } => *a == attr && (*m || !manage),
                _ => false,
            })
    }

    /// Whether the handle (`full` false) or the whole identity (`full`
    /// true: the DID document, PLC operations) may be changed.
    pub fn allows_identity(&self, full: bool) -> bool {
        self.permissions.iter().any(|p| match p {
            Permission::Identity { attr } => attr == "*" || (!full && attr == "handle"),
            _ => false,
        })
    }
}

/// `resource[:positional][?query]` into a permission, or `None`.
fn parse_permission(entry: &str) -> Option<Permission> {
    if !entry.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let (head, query) = entry.split_once('?').unwrap_or((entry, ""));
    let (resource, positional) = match head.split_once(':') {
        Some((r, p)) => (r, Some(percent_decode(p)?)),
        None => (head, None),
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let all = |key: &str| -> Vec<String> {
        params
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let one = |key: &str| -> Option<Option<String>> {
        match all(key).as_slice() {
            [] => Some(None),
            [v] => Some(Some(v.clone())),
            _ => None,
        }
    };
    // A parameter is given positionally or by name, not both.
    let main = |key: &str| -> Option<Vec<String>> {
        let named = all(key);
        match (&positional, named.is_empty()) {
            (Some(p), true) => Some(vec![p.clone()]),
            (None, false) => Some(named),
            _ => None,
        }
    };
    let known = |keys: &[&str]| params.iter().all(|(k, _)| keys.contains(&k.as_str()));
    match resource {
        "repo" if known(&["collection", "action"]) => {
            let collections = main("collection")?;
            let actions = match all("action").as_slice() {
                [] => [RepoAction::Create, RepoAction::Update, RepoAction::Delete].into(),
                given => given
                    .iter()
                    .map(|a| RepoAction::parse(a))
                    .collect::<Option<_>>()?,
            };
            Some(Permission::Repo {
                collections: collections.into_iter().collect(),
                actions,
            })
        }
        "blob" if known(&["accept"]) => {
            let accept = main("accept")?;
            match accept.as_slice() {
                [one] if one.contains('/') => Some(Permission::Blob {
                    accept: one.clone(),
                }),
                _ => None,
            }
        }
        "rpc" if known(&["lxm", "aud"]) => {
            let lxm = match main("lxm")?.as_slice() {
                [one] => one.clone(),
                _ => return None,
            };
            let aud = one("aud")??;
            if lxm == "*" && aud == "*" {
                return None;
            }
            Some(Permission::Rpc { lxm, aud })
        }
        "account" if known(&["attr", "action"]) => {
            let attr = match main("attr")?.as_slice() {
                [a] if a == "email" => AccountAttr::Email,
                [a] if a == "repo" => AccountAttr::Repo,
                [a] if a == "status" => AccountAttr::Status,
                _ => return None,
            };
            let manage = match one("action")?.as_deref() {
                None | Some("read") => false,
                Some("manage") => true,
                Some(_) => return None,
            };
            Some(Permission::Account { attr, manage })
        }
        "identity" if known(&["attr"]) => match main("attr")?.as_slice() {
            [a] if a == "handle" || a == "*" => Some(Permission::Identity { attr: a.clone() }),
            _ => None,
        },
        "include" if known(&["nsid", "aud"]) => {
            let nsid = match main("nsid")?.as_slice() {
                [n] if n.contains('.') => n.clone(),
                _ => return None,
            };
            Some(Permission::Include {
                nsid,
                aud: one("aud")?,
            })
        }
        _ => None,
    }
}

fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// Whether `mime` matches `accept`: exact, `type/*`, or `*/*`.
fn mime_matches(accept: &str, mime: &str) -> bool {
    let mime = mime.split(';').next().unwrap_or_default().trim();
    match accept.split_once('/') {
        Some(("*", "*")) => true,
        Some((kind, "*")) => mime.split_once('/').is_some_and(|(k, _)| k == kind),
        _ => accept == mime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitional_scopes() {
        let s = Scopes::parse("atproto transition:generic");
        assert!(s.atproto && s.has(Transition::Generic));
        assert!(!s.has(Transition::ChatBsky) && !s.has(Transition::Email));
        assert!(s.allows_repo("app.bsky.feed.post", RepoAction::Create));
        assert!(s.allows_blob("image/png"));
        assert!(s.allows_rpc(
            "app.bsky.feed.getTimeline",
            "did:web:api.bsky.app#bsky_appview"
        ));
        assert!(!s.allows_rpc(
            "chat.bsky.convo.listConvos",
            "did:web:api.bsky.chat#bsky_chat"
        ));
        assert!(!s.allows_account(AccountAttr::Email, false));
        assert!(!s.allows_identity(false));
        let chat =
            Scopes::parse("atproto transition:generic transition:chat.bsky transition:email");
        assert!(chat.allows_rpc(
            "chat.bsky.convo.listConvos",
            "did:web:api.bsky.chat#bsky_chat"
        ));
        assert!(chat.allows_account(AccountAttr::Email, false));
        assert!(!chat.allows_account(AccountAttr::Email, true));
        // chat alone does nothing; atproto alone grants no resource.
        let alone = Scopes::parse("atproto transition:chat.bsky");
        assert!(!alone.allows_rpc(
            "chat.bsky.convo.listConvos",
            "did:web:api.bsky.chat#bsky_chat"
        ));
        let bare = Scopes::parse("atproto");
        assert!(!bare.allows_repo("app.bsky.feed.post", RepoAction::Create));
        assert!(!bare.allows_blob("image/png"));
    }

    #[test]
    fn granular_repo_and_blob() {
        let s = Scopes::parse(
            "atproto repo:app.bsky.feed.post?action=create \
             repo?collection=app.bsky.feed.like&collection=app.bsky.graph.follow blob:image/*",
        );
        assert!(s.unknown.is_empty(), "{:?}", s.unknown);
        assert!(s.allows_repo("app.bsky.feed.post", RepoAction::Create));
        assert!(!s.allows_repo("app.bsky.feed.post", RepoAction::Delete));
        assert!(s.allows_repo("app.bsky.feed.like", RepoAction::Delete));
        assert!(s.allows_repo("app.bsky.graph.follow", RepoAction::Create));
        assert!(!s.allows_repo("app.bsky.graph.block", RepoAction::Create));
        assert!(s.allows_blob("image/jpeg"));
        assert!(s.allows_blob("image/png; charset=binary"));
        assert!(!s.allows_blob("video/mp4"));
        let any = Scopes::parse("atproto repo:* blob:*/*");
        assert!(any.allows_repo("com.example.thing", RepoAction::Update));
        assert!(any.allows_blob("video/mp4"));
    }

    #[test]
    fn granular_rpc_account_identity_include() {
        let s = Scopes::parse(
            "atproto rpc:app.bsky.actor.getProfile?aud=did:web:api.bsky.app%23bsky_appview \
             account:email?action=manage identity:handle include:com.example.basics",
        );
        assert!(s.unknown.is_empty(), "{:?}", s.unknown);
        assert!(s.allows_rpc(
            "app.bsky.actor.getProfile",
            "did:web:api.bsky.app#bsky_appview"
        ));
        assert!(!s.allows_rpc(
            "app.bsky.actor.getProfile",
            "did:web:evil.example#bsky_appview"
        ));
        assert!(!s.allows_rpc(
            "app.bsky.feed.getTimeline",
            "did:web:api.bsky.app#bsky_appview"
        ));
        assert!(s.allows_account(AccountAttr::Email, true));
        assert!(
            s.allows_account(AccountAttr::Email, false),
            "manage implies read"
        );
        assert!(!s.allows_account(AccountAttr::Repo, false));
        assert!(s.allows_identity(false));
        assert!(!s.allows_identity(true));
        assert!(s.permissions.contains(&Permission::Include {
            nsid: "com.example.basics".to_owned(),
            aud: None
        }));
        let wide =
            Scopes::parse("atproto rpc:*?aud=did:web:api.bsky.app%23bsky_appview identity:*");
        assert!(wide.allows_rpc(
            "app.bsky.feed.getTimeline",
            "did:web:api.bsky.app#bsky_appview"
        ));
        assert!(wide.allows_identity(true));
    }

    #[test]
    fn malformed_entries_are_set_aside() {
        for bad in [
            "rpc:app.bsky.feed.getTimeline",
            "rpc:*?aud=*",
            "repo:app.bsky.feed.post?action=publish",
            "repo:app.bsky.feed.post?collection=app.bsky.feed.like",
            "blob:image",
            "account:password",
            "account:email?action=delete",
            "identity:did",
            "include:notansid",
            "repo:app.bsky.feed.post?color=red",
            "transition:everything",
            "frobnicate",
        ] {
            let s = Scopes::parse(&format!("atproto {bad}"));
            assert_eq!(s.unknown, [bad], "{bad}");
            assert!(s.permissions.is_empty(), "{bad}");
        }
    }
}
