//! `com.atproto.server.*`: the server description, sign-up, sessions, app
//! passwords, account status, email, invite codes and service auth.
//!
//! Handlers are thin: they parse the lexicon input, authenticate, call the
//! [`AccountManager`](crate::accounts::AccountManager) and render the
//! lexicon output.

mod account;
mod app_password;
mod describe;
mod email;
mod invite;
mod service_auth;
mod session;

use aurora_core::plugin::XrpcMethodKind::{Procedure, Query};
use aurora_core::{PdsContext, XrpcRoute};
use axum::routing::{get, post};

pub(crate) use invite::invite_code_json;

use crate::accounts::AccountManager;
use crate::xrpc::route;

#[allow(clippy::too_many_lines)] // one entry per method: a table, not logic
pub(crate) fn routes(ctx: &PdsContext, accounts: &AccountManager) -> Vec<XrpcRoute> {
    let m = accounts;
    vec![
        route(
            "com.atproto.server.describeServer",
            Query,
            get(describe::describe_server).with_state(ctx.clone()),
        ),
        route(
            "com.atproto.server.createAccount",
            Procedure,
            post(account::create_account).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.checkAccountStatus",
            Query,
            get(account::check_account_status).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.activateAccount",
            Procedure,
            post(account::activate_account).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.deactivateAccount",
            Procedure,
            post(account::deactivate_account).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.requestAccountDelete",
            Procedure,
            post(account::request_account_delete).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.deleteAccount",
            Procedure,
            post(account::delete_account).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.createSession",
            Procedure,
            post(session::create_session).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.getSession",
            Query,
            get(session::get_session).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.refreshSession",
            Procedure,
            post(session::refresh_session).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.deleteSession",
            Procedure,
            post(session::delete_session).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.createAppPassword",
            Procedure,
            post(app_password::create_app_password).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.listAppPasswords",
            Query,
            get(app_password::list_app_passwords).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.revokeAppPassword",
            Procedure,
            post(app_password::revoke_app_password).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.requestEmailConfirmation",
            Procedure,
            post(email::request_email_confirmation).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.confirmEmail",
            Procedure,
            post(email::confirm_email).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.requestEmailUpdate",
            Procedure,
            post(email::request_email_update).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.updateEmail",
            Procedure,
            post(email::update_email).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.requestPasswordReset",
            Procedure,
            post(email::request_password_reset).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.resetPassword",
            Procedure,
            post(email::reset_password).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.createInviteCode",
            Procedure,
            post(invite::create_invite_code).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.createInviteCodes",
            Procedure,
            post(invite::create_invite_codes).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.getAccountInviteCodes",
            Query,
            get(invite::get_account_invite_codes).with_state(m.clone()),
        ),
        route(
            "com.atproto.server.getServiceAuth",
            Query,
            get(service_auth::get_service_auth).with_state(m.clone()),
        ),
    ]
}
