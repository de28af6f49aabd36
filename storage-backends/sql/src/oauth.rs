//! `OAuthStore` on SQL: the `oauth_*` tables.

use async_trait::async_trait;
use aurora_core::store::{
    OAuthDeviceAccount, OAuthRequest, OAuthRotation, OAuthSession, OAuthStore, RefreshTokenState,
    StoreError,
};
use aurora_core::syntax::Did;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, SqlErr,
};

use crate::entity::{
    oauth_authorized_client, oauth_device_account, oauth_request, oauth_session, oauth_used_refresh,
};
use crate::{SqlStore, convert, db_err};

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Maps a unique-constraint violation to `AlreadyExists { field }`.
fn unique_err(field: &'static str) -> impl Fn(sea_orm::DbErr) -> StoreError {
    move |e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::AlreadyExists { field },
        _ => db_err(e),
    }
}

fn request_from_row(row: oauth_request::Model) -> Result<OAuthRequest, StoreError> {
    Ok(OAuthRequest {
        id: row.id,
        client_id: row.client_id,
        client_auth: row.client_auth,
        dpop_jkt: row.dpop_jkt,
        parameters: row.parameters,
        device_id: row.device_id,
        did: row.did.map(|d| convert::parse(d, Did::parse)).transpose()?,
        code: row.code,
        expires_at: time(row.expires_at_ms),
    })
}

fn session_from_row(row: oauth_session::Model) -> Result<OAuthSession, StoreError> {
    Ok(OAuthSession {
        id: row.id,
        did: convert::parse(row.did, Did::parse)?,
        client_id: row.client_id,
        client_auth: row.client_auth,
        dpop_jkt: row.dpop_jkt,
        scope: row.scope,
        device_id: row.device_id,
        code: row.code,
        token_id: row.token_id,
        refresh_hash: row.refresh_hash,
        created_at: time(row.created_at_ms),
        updated_at: time(row.updated_at_ms),
        expires_at: time(row.expires_at_ms),
    })
}

fn device_account_from_row(
    row: oauth_device_account::Model,
) -> Result<OAuthDeviceAccount, StoreError> {
    Ok(OAuthDeviceAccount {
        device_id: row.device_id,
        did: convert::parse(row.did, Did::parse)?,
        authenticated_at: time(row.authenticated_at_ms),
        user_agent: row.user_agent,
        last_seen_at: time(row.last_seen_at_ms),
    })
}

async fn one_session(
    db: &impl ConnectionTrait,
    column: oauth_session::Column,
    value: &str,
) -> Result<Option<OAuthSession>, StoreError> {
    oauth_session::Entity::find()
        .filter(column.eq(value))
        .one(db)
        .await
        .map_err(db_err)?
        .map(session_from_row)
        .transpose()
}

/// Deletes sessions matching `filter`, with the refresh tokens they used;
/// how many sessions.
async fn delete_sessions(
    db: &impl ConnectionTrait,
    filter: sea_orm::Condition,
) -> Result<u64, StoreError> {
    let ids: Vec<String> = oauth_session::Entity::find()
        .filter(filter)
        .all(db)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|row| row.id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    oauth_used_refresh::Entity::delete_many()
        .filter(oauth_used_refresh::Column::SessionId.is_in(ids.iter().cloned()))
        .exec(db)
        .await
        .map_err(db_err)?;
    let res = oauth_session::Entity::delete_many()
        .filter(oauth_session::Column::Id.is_in(ids))
        .exec(db)
        .await
        .map_err(db_err)?;
    Ok(res.rows_affected)
}

/// Ends every OAuth session of `did` and forgets it on every device,
/// inside the caller's transaction (password change, account deletion).
pub(crate) async fn end_sessions(db: &impl ConnectionTrait, did: &Did) -> Result<u64, StoreError> {
    let ended = delete_sessions(
        db,
        sea_orm::Condition::all().add(oauth_session::Column::Did.eq(did.as_str())),
    )
    .await?;
    oauth_device_account::Entity::delete_many()
        .filter(oauth_device_account::Column::Did.eq(did.as_str()))
        .exec(db)
        .await
        .map_err(db_err)?;
    Ok(ended)
}

/// [`end_sessions`], and the scopes `did` granted: a deleted account.
pub(crate) async fn forget_account(db: &impl ConnectionTrait, did: &Did) -> Result<(), StoreError> {
    end_sessions(db, did).await?;
    oauth_authorized_client::Entity::delete_many()
        .filter(oauth_authorized_client::Column::Did.eq(did.as_str()))
        .exec(db)
        .await
        .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl OAuthStore for SqlStore {
    async fn create_oauth_request(&self, request: &OAuthRequest) -> Result<(), StoreError> {
        let row = oauth_request::ActiveModel {
            id: Set(request.id.clone()),
            client_id: Set(request.client_id.clone()),
            client_auth: Set(request.client_auth.clone()),
            dpop_jkt: Set(request.dpop_jkt.clone()),
            parameters: Set(request.parameters.clone()),
            device_id: Set(request.device_id.clone()),
            did: Set(request.did.as_ref().map(|d| d.as_str().to_owned())),
            code: Set(request.code.clone()),
            expires_at_ms: Set(ms(request.expires_at)),
        };
        oauth_request::Entity::insert(row)
            .exec_without_returning(self.reads())
            .await
            .map_err(unique_err("request id"))?;
        Ok(())
    }

    async fn oauth_request(&self, id: &str) -> Result<Option<OAuthRequest>, StoreError> {
        oauth_request::Entity::find_by_id(id.to_owned())
            .one(self.reads())
            .await
            .map_err(db_err)?
            .map(request_from_row)
            .transpose()
    }

    async fn bind_oauth_request(
        &self,
        id: &str,
        device_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One conditional update: unapproved, and unbound or bound here.
        let res = oauth_request::Entity::update_many()
            .col_expr(
                oauth_request::Column::DeviceId,
                sea_orm::sea_query::Expr::value(device_id),
            )
            .col_expr(
                oauth_request::Column::ExpiresAtMs,
                sea_orm::sea_query::Expr::value(ms(expires_at)),
            )
            .filter(oauth_request::Column::Id.eq(id))
            .filter(oauth_request::Column::Code.is_null())
            .filter(
                sea_orm::Condition::any()
                    .add(oauth_request::Column::DeviceId.is_null())
                    .add(oauth_request::Column::DeviceId.eq(device_id)),
            )
            .exec(self.reads())
            .await
            .map_err(db_err)?;
        Ok(res.rows_affected == 1)
    }

    async fn approve_oauth_request(
        &self,
        id: &str,
        did: &Did,
        code: &str,
        parameters: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        use sea_orm::sea_query::Expr;
        let res = oauth_request::Entity::update_many()
            .col_expr(oauth_request::Column::Did, Expr::value(did.as_str()))
            .col_expr(oauth_request::Column::Code, Expr::value(code))
            .col_expr(oauth_request::Column::Parameters, Expr::value(parameters))
            .col_expr(
                oauth_request::Column::ExpiresAtMs,
                Expr::value(ms(expires_at)),
            )
            .filter(oauth_request::Column::Id.eq(id))
            .filter(oauth_request::Column::Code.is_null())
            .exec(self.reads())
            .await
            .map_err(unique_err("code"))?;
        Ok(res.rows_affected == 1)
    }

    async fn take_oauth_request_by_code(
        &self,
        code: &str,
    ) -> Result<Option<OAuthRequest>, StoreError> {
        let txn = self.begin_write().await?;
        let Some(row) = oauth_request::Entity::find()
            .filter(oauth_request::Column::Code.eq(code))
            .one(&txn)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        // Of two concurrent takes, only one deletes the row.
        let res = oauth_request::Entity::delete_by_id(row.id.clone())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        if res.rows_affected == 1 {
            request_from_row(row).map(Some)
        } else {
            Ok(None)
        }
    }

    async fn delete_oauth_request(&self, id: &str) -> Result<bool, StoreError> {
        let res = oauth_request::Entity::delete_by_id(id.to_owned())
            .exec(self.reads())
            .await
            .map_err(db_err)?;
        Ok(res.rows_affected > 0)
    }

    async fn delete_expired_oauth_requests(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = oauth_request::Entity::delete_many()
            .filter(oauth_request::Column::ExpiresAtMs.lt(ms(now)))
            .exec(self.reads())
            .await
            .map_err(db_err)?;
        Ok(res.rows_affected)
    }

    async fn create_oauth_session(&self, session: &OAuthSession) -> Result<(), StoreError> {
        let row = oauth_session::ActiveModel {
            id: Set(session.id.clone()),
            did: Set(session.did.as_str().to_owned()),
            client_id: Set(session.client_id.clone()),
            client_auth: Set(session.client_auth.clone()),
            dpop_jkt: Set(session.dpop_jkt.clone()),
            scope: Set(session.scope.clone()),
            device_id: Set(session.device_id.clone()),
            code: Set(session.code.clone()),
            token_id: Set(session.token_id.clone()),
            refresh_hash: Set(session.refresh_hash.clone()),
            created_at_ms: Set(ms(session.created_at)),
            updated_at_ms: Set(ms(session.updated_at)),
            expires_at_ms: Set(ms(session.expires_at)),
        };
        oauth_session::Entity::insert(row)
            .exec_without_returning(self.reads())
            .await
            .map_err(unique_err("session"))?;
        Ok(())
    }

    async fn oauth_session_by_token(
        &self,
        token_id: &str,
    ) -> Result<Option<OAuthSession>, StoreError> {
        one_session(self.reads(), oauth_session::Column::TokenId, token_id).await
    }

    async fn oauth_session_by_code(&self, code: &str) -> Result<Option<OAuthSession>, StoreError> {
        one_session(self.reads(), oauth_session::Column::Code, code).await
    }

    async fn oauth_session_by_refresh(
        &self,
        refresh_hash: &str,
    ) -> Result<Option<(OAuthSession, RefreshTokenState)>, StoreError> {
        let db = self.reads();
        if let Some(session) =
            one_session(db, oauth_session::Column::RefreshHash, refresh_hash).await?
        {
            return Ok(Some((session, RefreshTokenState::Current)));
        }
        let Some(used) = oauth_used_refresh::Entity::find_by_id(refresh_hash.to_owned())
            .one(db)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        Ok(one_session(db, oauth_session::Column::Id, &used.session_id)
            .await?
            .map(|session| (session, RefreshTokenState::Used)))
    }

    async fn rotate_oauth_session(
        &self,
        id: &str,
        old_refresh_hash: &str,
        next: &OAuthRotation,
    ) -> Result<Option<OAuthSession>, StoreError> {
        use sea_orm::sea_query::Expr;
        let txn = self.begin_write().await?;
        let res = oauth_session::Entity::update_many()
            .col_expr(oauth_session::Column::TokenId, Expr::value(&next.token_id))
            .col_expr(
                oauth_session::Column::RefreshHash,
                Expr::value(&next.refresh_hash),
            )
            .col_expr(oauth_session::Column::Scope, Expr::value(&next.scope))
            .col_expr(
                oauth_session::Column::UpdatedAtMs,
                Expr::value(ms(next.updated_at)),
            )
            .col_expr(
                oauth_session::Column::ExpiresAtMs,
                Expr::value(ms(next.expires_at)),
            )
            .filter(oauth_session::Column::Id.eq(id))
            .filter(oauth_session::Column::RefreshHash.eq(old_refresh_hash))
            .exec(&txn)
            .await
            .map_err(unique_err("refresh token"))?;
        if res.rows_affected != 1 {
            return Ok(None);
        }
        oauth_used_refresh::Entity::insert(oauth_used_refresh::ActiveModel {
            refresh_hash: Set(old_refresh_hash.to_owned()),
            session_id: Set(id.to_owned()),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(db_err)?;
        let session = one_session(&txn, oauth_session::Column::Id, id).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(session)
    }

    async fn list_oauth_sessions(&self, did: &Did) -> Result<Vec<OAuthSession>, StoreError> {
        oauth_session::Entity::find()
            .filter(oauth_session::Column::Did.eq(did.as_str()))
            .order_by_asc(oauth_session::Column::CreatedAtMs)
            .order_by_asc(oauth_session::Column::Id)
            .all(self.reads())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(session_from_row)
            .collect()
    }

    async fn delete_oauth_session(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.begin_write().await?;
        let ended = delete_sessions(
            &txn,
            sea_orm::Condition::all().add(oauth_session::Column::Id.eq(id)),
        )
        .await?;
        txn.commit().await.map_err(db_err)?;
        Ok(ended > 0)
    }

    async fn end_oauth_sessions(&self, did: &Did) -> Result<u64, StoreError> {
        let txn = self.begin_write().await?;
        let ended = end_sessions(&txn, did).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(ended)
    }

    async fn upsert_oauth_device_account(
        &self,
        account: &OAuthDeviceAccount,
    ) -> Result<(), StoreError> {
        let row = oauth_device_account::ActiveModel {
            device_id: Set(account.device_id.clone()),
            did: Set(account.did.as_str().to_owned()),
            authenticated_at_ms: Set(ms(account.authenticated_at)),
            user_agent: Set(account.user_agent.clone()),
            last_seen_at_ms: Set(ms(account.last_seen_at)),
        };
        oauth_device_account::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    oauth_device_account::Column::DeviceId,
                    oauth_device_account::Column::Did,
                ])
                .update_columns([
                    oauth_device_account::Column::AuthenticatedAtMs,
                    oauth_device_account::Column::UserAgent,
                    oauth_device_account::Column::LastSeenAtMs,
                ])
                .to_owned(),
            )
            .exec_without_returning(self.reads())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn oauth_device_accounts(
        &self,
        device_id: &str,
    ) -> Result<Vec<OAuthDeviceAccount>, StoreError> {
        oauth_device_account::Entity::find()
            .filter(oauth_device_account::Column::DeviceId.eq(device_id))
            .order_by_desc(oauth_device_account::Column::LastSeenAtMs)
            .all(self.reads())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(device_account_from_row)
            .collect()
    }

    async fn oauth_devices_of(&self, did: &Did) -> Result<Vec<OAuthDeviceAccount>, StoreError> {
        oauth_device_account::Entity::find()
            .filter(oauth_device_account::Column::Did.eq(did.as_str()))
            .order_by_desc(oauth_device_account::Column::LastSeenAtMs)
            .all(self.reads())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(device_account_from_row)
            .collect()
    }

    async fn delete_oauth_device_account(
        &self,
        device_id: &str,
        did: &Did,
    ) -> Result<bool, StoreError> {
        let res = oauth_device_account::Entity::delete_by_id((
            device_id.to_owned(),
            did.as_str().to_owned(),
        ))
        .exec(self.reads())
        .await
        .map_err(db_err)?;
        Ok(res.rows_affected > 0)
    }

    async fn oauth_authorized_scope(
        &self,
        did: &Did,
        client_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(oauth_authorized_client::Entity::find_by_id((
            did.as_str().to_owned(),
            client_id.to_owned(),
        ))
        .one(self.reads())
        .await
        .map_err(db_err)?
        .map(|row| row.scope))
    }

    async fn set_oauth_authorized_scope(
        &self,
        did: &Did,
        client_id: &str,
        scope: &str,
    ) -> Result<(), StoreError> {
        let row = oauth_authorized_client::ActiveModel {
            did: Set(did.as_str().to_owned()),
            client_id: Set(client_id.to_owned()),
            scope: Set(scope.to_owned()),
        };
        oauth_authorized_client::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    oauth_authorized_client::Column::Did,
                    oauth_authorized_client::Column::ClientId,
                ])
                .update_column(oauth_authorized_client::Column::Scope)
                .to_owned(),
            )
            .exec_without_returning(self.reads())
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
