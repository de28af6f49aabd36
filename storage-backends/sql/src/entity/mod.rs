//! sea-orm entities for the tables of `aurora-migrations`. Private to this
//! crate: nothing outside the backend sees a row type.

// The sea-orm derives generate `pub` items; the module itself is private.
#![allow(unreachable_pub, missing_debug_implementations)]

pub(crate) mod account;
pub(crate) mod account_pref;
pub(crate) mod account_signing_key;
pub(crate) mod app_password;
pub(crate) mod blob;
pub(crate) mod email_token;
pub(crate) mod invite_code;
pub(crate) mod invite_code_use;
pub(crate) mod oauth_authorized_client;
pub(crate) mod oauth_device_account;
pub(crate) mod oauth_request;
pub(crate) mod oauth_session;
pub(crate) mod oauth_used_refresh;
pub(crate) mod record;
pub(crate) mod record_blob;
pub(crate) mod refresh_token;
pub(crate) mod repo_block;
pub(crate) mod repo_root;
pub(crate) mod repo_seq;
pub(crate) mod sink_cursor;
pub(crate) mod sink_lease;
