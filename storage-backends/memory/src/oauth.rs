//! `OAuthStore` in memory.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aurora_core::store::{
    OAuthDeviceAccount, OAuthRequest, OAuthRotation, OAuthSession, OAuthStore, RefreshTokenState,
    StoreError,
};
use aurora_core::syntax::Did;
use chrono::{DateTime, Utc};

use crate::store::MemoryStore;

#[derive(Default)]
pub(crate) struct OAuthState {
    requests: HashMap<String, OAuthRequest>,
    sessions: BTreeMap<String, OAuthSession>,
    /// Used refresh token hash -> session id.
    used_refresh: HashMap<String, String>,
    /// (device id, DID) -> the remembered account.
    device_accounts: BTreeMap<(String, Did), OAuthDeviceAccount>,
    authorized: HashMap<(Did, String), String>,
}

impl OAuthState {
    fn remove_session(&mut self, id: &str) -> bool {
        let found = self.sessions.remove(id).is_some();
        if found {
            self.used_refresh.retain(|_, session| session != id);
        }
        found
    }

    /// Ends every session of `did` and forgets it on every device.
    pub(crate) fn end_sessions(&mut self, did: &Did) -> u64 {
        let ids: Vec<String> = self
            .sessions
            .values()
            .filter(|s| &s.did == did)
            .map(|s| s.id.clone())
            .collect();
        for id in &ids {
            self.remove_session(id);
        }
        self.device_accounts.retain(|(_, owner), _| owner != did);
        ids.len() as u64
    }

    /// Forgets everything about `did` (a deleted account).
    pub(crate) fn forget_account(&mut self, did: &Did) {
        self.end_sessions(did);
        self.authorized.retain(|(owner, _), _| owner != did);
    }
}

fn seen_order(accounts: impl Iterator<Item = OAuthDeviceAccount>) -> Vec<OAuthDeviceAccount> {
    let mut accounts: Vec<_> = accounts.collect();
    accounts.sort_by_key(|a| std::cmp::Reverse(a.last_seen_at));
    accounts
}

#[async_trait]
impl OAuthStore for MemoryStore {
    async fn create_oauth_request(&self, request: &OAuthRequest) -> Result<(), StoreError> {
        let mut state = self.lock();
        let requests = &mut state.oauth.requests;
        if requests.contains_key(&request.id) {
            return Err(StoreError::AlreadyExists {
                field: "request id",
            });
        }
        requests.insert(request.id.clone(), request.clone());
        Ok(())
    }

    async fn oauth_request(&self, id: &str) -> Result<Option<OAuthRequest>, StoreError> {
        Ok(self.lock().oauth.requests.get(id).cloned())
    }

    async fn bind_oauth_request(
        &self,
        id: &str,
        device_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(request) = state.oauth.requests.get_mut(id) else {
            return Ok(false);
        };
        if request.code.is_some()
            || request
                .device_id
                .as_deref()
                .is_some_and(|bound| bound != device_id)
        {
            return Ok(false);
        }
        request.device_id = Some(device_id.to_owned());
        request.expires_at = expires_at;
        Ok(true)
    }

    async fn approve_oauth_request(
        &self,
        id: &str,
        did: &Did,
        code: &str,
        parameters: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let taken = state
            .oauth
            .requests
            .values()
            .any(|r| r.code.as_deref() == Some(code));
        let Some(request) = state.oauth.requests.get_mut(id) else {
            return Ok(false);
        };
        if request.code.is_some() {
            return Ok(false);
        }
        if taken {
            return Err(StoreError::AlreadyExists { field: "code" });
        }
        request.did = Some(did.clone());
        request.code = Some(code.to_owned());
        parameters.clone_into(&mut request.parameters);
        request.expires_at = expires_at;
        Ok(true)
    }

    async fn take_oauth_request_by_code(
        &self,
        code: &str,
    ) -> Result<Option<OAuthRequest>, StoreError> {
        let mut state = self.lock();
        let id = state
            .oauth
            .requests
            .values()
            .find(|r| r.code.as_deref() == Some(code))
            .map(|r| r.id.clone());
        Ok(id.and_then(|id| state.oauth.requests.remove(&id)))
    }

    async fn delete_oauth_request(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().oauth.requests.remove(id).is_some())
    }

    async fn delete_expired_oauth_requests(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let before = state.oauth.requests.len();
        state.oauth.requests.retain(|_, r| r.expires_at >= now);
        Ok((before - state.oauth.requests.len()) as u64)
    }

    async fn create_oauth_session(&self, session: &OAuthSession) -> Result<(), StoreError> {
        let mut state = self.lock();
        let oauth = &mut state.oauth;
        let clash = oauth.sessions.values().find_map(|s| {
            if s.id == session.id {
                Some("session id")
            } else if s.code == session.code {
                Some("code")
            } else if s.token_id == session.token_id {
                Some("token id")
            } else if s.refresh_hash == session.refresh_hash {
                Some("refresh token")
            } else {
                None
            }
        });
        if let Some(field) = clash {
            return Err(StoreError::AlreadyExists { field });
        }
        oauth.sessions.insert(session.id.clone(), session.clone());
        Ok(())
    }

    async fn oauth_session_by_token(
        &self,
        token_id: &str,
    ) -> Result<Option<OAuthSession>, StoreError> {
        let state = self.lock();
        Ok(state
            .oauth
            .sessions
            .values()
            .find(|s| s.token_id == token_id)
            .cloned())
    }

    async fn oauth_session_by_code(&self, code: &str) -> Result<Option<OAuthSession>, StoreError> {
        let state = self.lock();
        Ok(state
            .oauth
            .sessions
            .values()
            .find(|s| s.code == code)
            .cloned())
    }

    async fn oauth_session_by_refresh(
        &self,
        refresh_hash: &str,
    ) -> Result<Option<(OAuthSession, RefreshTokenState)>, StoreError> {
        let state = self.lock();
        let oauth = &state.oauth;
        if let Some(session) = oauth
            .sessions
            .values()
            .find(|s| s.refresh_hash == refresh_hash)
        {
            return Ok(Some((session.clone(), RefreshTokenState::Current)));
        }
        Ok(oauth
            .used_refresh
            .get(refresh_hash)
            .and_then(|id| oauth.sessions.get(id))
            .map(|s| (s.clone(), RefreshTokenState::Used)))
    }

    async fn rotate_oauth_session(
        &self,
        id: &str,
        old_refresh_hash: &str,
        next: &OAuthRotation,
    ) -> Result<Option<OAuthSession>, StoreError> {
        let mut state = self.lock();
        let oauth = &mut state.oauth;
        let Some(session) = oauth.sessions.get_mut(id) else {
            return Ok(None);
        };
        if session.refresh_hash != old_refresh_hash {
            return Ok(None);
        }
        session.token_id.clone_from(&next.token_id);
        session.refresh_hash.clone_from(&next.refresh_hash);
        session.scope.clone_from(&next.scope);
        session.updated_at = next.updated_at;
        session.expires_at = next.expires_at;
        let updated = session.clone();
        oauth
            .used_refresh
            .insert(old_refresh_hash.to_owned(), id.to_owned());
        Ok(Some(updated))
    }

    async fn list_oauth_sessions(&self, did: &Did) -> Result<Vec<OAuthSession>, StoreError> {
        let state = self.lock();
        let mut sessions: Vec<_> = state
            .oauth
            .sessions
            .values()
            .filter(|s| &s.did == did)
            .cloned()
            .collect();
        sessions.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(sessions)
    }

    async fn delete_oauth_session(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().oauth.remove_session(id))
    }

    async fn end_oauth_sessions(&self, did: &Did) -> Result<u64, StoreError> {
        Ok(self.lock().oauth.end_sessions(did))
    }

    async fn upsert_oauth_device_account(
        &self,
        account: &OAuthDeviceAccount,
    ) -> Result<(), StoreError> {
        self.lock().oauth.device_accounts.insert(
            (account.device_id.clone(), account.did.clone()),
            account.clone(),
        );
        Ok(())
    }

    async fn oauth_device_accounts(
        &self,
        device_id: &str,
    ) -> Result<Vec<OAuthDeviceAccount>, StoreError> {
        let state = self.lock();
        Ok(seen_order(
            state
                .oauth
                .device_accounts
                .values()
                .filter(|a| a.device_id == device_id)
                .cloned(),
        ))
    }

    async fn oauth_devices_of(&self, did: &Did) -> Result<Vec<OAuthDeviceAccount>, StoreError> {
        let state = self.lock();
        Ok(seen_order(
            state
                .oauth
                .device_accounts
                .values()
                .filter(|a| &a.did == did)
                .cloned(),
        ))
    }

    async fn delete_oauth_device_account(
        &self,
        device_id: &str,
        did: &Did,
    ) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .oauth
            .device_accounts
            .remove(&(device_id.to_owned(), did.clone()))
            .is_some())
    }

    async fn oauth_authorized_scope(
        &self,
        did: &Did,
        client_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .oauth
            .authorized
            .get(&(did.clone(), client_id.to_owned()))
            .cloned())
    }

    async fn set_oauth_authorized_scope(
        &self,
        did: &Did,
        client_id: &str,
        scope: &str,
    ) -> Result<(), StoreError> {
        self.lock()
            .oauth
            .authorized
            .insert((did.clone(), client_id.to_owned()), scope.to_owned());
        Ok(())
    }
}
