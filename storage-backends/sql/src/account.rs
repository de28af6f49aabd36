//! `AccountStore` on SQL.

use async_trait::async_trait;
use aurora_core::crypto::{Curve, SigningKey};
use aurora_core::store::{
    Account, AccountLookup, AccountStatus, AccountStore, AppPassword, EmailToken,
    EmailTokenPurpose, InviteCode, InviteCodeSort, NewAccount, NewInviteCode, RefreshToken,
    StoreError,
};
use aurora_core::syntax::{Did, Handle};
use chrono::{DateTime, Utc};
use sea_orm::JoinType;
use sea_orm::sea_query::{Expr, ExprTrait, LockType, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr,
};

use crate::entity::{
    account, account_pref, account_signing_key, app_password, email_token, invite_code,
    refresh_token,
};
use crate::{SqlStore, convert, db_err, invite};

fn refresh_token_from_row(row: refresh_token::Model) -> Result<RefreshToken, StoreError> {
    Ok(RefreshToken {
        id: row.id,
        session_id: row.session_id,
        did: convert::parse(row.did, Did::parse)?,
        app_password: row.app_password_name,
        expires_at: row.expires_at,
    })
}

fn refresh_token_row(t: &RefreshToken) -> refresh_token::ActiveModel {
    refresh_token::ActiveModel {
        id: Set(t.id.clone()),
        session_id: Set(t.session_id.clone()),
        did: Set(t.did.as_str().to_owned()),
        app_password_name: Set(t.app_password.clone()),
        expires_at: Set(t.expires_at),
    }
}

/// Deletes refresh tokens of `did` (only those of `app_password` when given).
async fn delete_sessions(
    txn: &DatabaseTransaction,
    did: &Did,
    app_password: Option<&str>,
) -> Result<u64, StoreError> {
    let mut query =
        refresh_token::Entity::delete_many().filter(refresh_token::Column::Did.eq(did.as_str()));
    if let Some(name) = app_password {
        query = query.filter(refresh_token::Column::AppPasswordName.eq(name));
    }
    Ok(query.exec(txn).await.map_err(db_err)?.rows_affected)
}

fn account_from_row(row: account::Model) -> Result<Account, StoreError> {
    Ok(Account {
        did: convert::parse(row.did, Did::parse)?,
        handle: convert::parse(row.handle, Handle::parse)?,
        email: row.email,
        password_hash: row.password_hash,
        status: row.status.parse()?,
        created_at: row.created_at,
        email_confirmed_at: row.email_confirmed_at,
        takedown_ref: row.takedown_ref,
    })
}

/// Maps a unique-constraint violation to the field that clashed.
fn unique_err(e: sea_orm::DbErr) -> StoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(msg)) => StoreError::AlreadyExists {
            field: if msg.contains("handle") {
                "handle"
            } else if msg.contains("email") {
                "email"
            } else {
                "did"
            },
        },
        _ => db_err(e),
    }
}

impl SqlStore {
    async fn update_account(
        &self,
        did: &Did,
        column: account::Column,
        value: Expr,
    ) -> Result<(), StoreError> {
        let res = account::Entity::update_many()
            .col_expr(column, value)
            .filter(account::Column::Did.eq(did.as_str()))
            .exec(self.reads())
            .await
            .map_err(unique_err)?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("account"));
        }
        Ok(())
    }
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, new: NewAccount) -> Result<Account, StoreError> {
        let signing_key = new.signing_key.clone();
        let invite_code = new.invite_code.clone();
        let account = new.into_account();
        let row = account::ActiveModel {
            did: Set(account.did.as_str().to_owned()),
            handle: Set(account.handle.as_str().to_owned()),
            email: Set(account.email.clone()),
            password_hash: Set(account.password_hash.clone()),
            status: Set(account.status.as_str().to_owned()),
            created_at: Set(account.created_at),
            email_confirmed_at: Set(None),
            takedown_ref: Set(None),
        };
        let txn = self.begin_write().await?;
        if let Some(code) = &invite_code {
            invite::consume(&txn, code, &account.did, account.created_at).await?;
        }
        account::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(unique_err)?;
        if let Some(key) = signing_key {
            let key_row = account_signing_key::ActiveModel {
                did: Set(account.did.as_str().to_owned()),
                curve: Set(key.curve().name().to_owned()),
                private_key: Set(key.to_bytes().to_vec()),
            };
            account_signing_key::Entity::insert(key_row)
                .exec_without_returning(&txn)
                .await
                .map_err(unique_err)?;
        }
        txn.commit().await.map_err(db_err)?;
        Ok(account)
    }

    async fn get_signing_key(&self, did: &Did) -> Result<Option<SigningKey>, StoreError> {
        let Some(row) = account_signing_key::Entity::find_by_id(did.as_str().to_owned())
            .one(self.reads())
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let curve = Curve::ALL
            .into_iter()
            .find(|c| c.name() == row.curve)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown key curve {:?}", row.curve)))?;
        SigningKey::from_bytes(curve, &row.private_key)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("signing key of {did}: {e}")))
    }

    async fn get_account(&self, lookup: AccountLookup<'_>) -> Result<Option<Account>, StoreError> {
        let query = account::Entity::find();
        let query = match lookup {
            AccountLookup::Did(did) => query.filter(account::Column::Did.eq(did.as_str())),
            AccountLookup::Handle(handle) => {
                query.filter(account::Column::Handle.eq(handle.as_str()))
            }
            AccountLookup::Email(_) => {
                query.filter(account::Column::Email.eq(lookup.normalized_email()))
            }
        };
        query
            .one(self.reads())
            .await
            .map_err(db_err)?
            .map(account_from_row)
            .transpose()
    }

    async fn list_accounts(
        &self,
        cursor: Option<&Did>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        let mut query = account::Entity::find().order_by_asc(account::Column::Did);
        if let Some(cursor) = cursor {
            query = query.filter(account::Column::Did.gt(cursor.as_str()));
        }
        query
            .limit(limit as u64)
            .all(self.reads())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(account_from_row)
            .collect()
    }

    async fn update_handle(&self, did: &Did, handle: &Handle) -> Result<(), StoreError> {
        self.update_account(did, account::Column::Handle, Expr::value(handle.as_str()))
            .await
    }

    async fn update_status(&self, did: &Did, status: AccountStatus) -> Result<(), StoreError> {
        self.update_account(did, account::Column::Status, Expr::value(status.as_str()))
            .await
    }

    async fn set_takedown_ref(
        &self,
        did: &Did,
        takedown_ref: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update_account(
            did,
            account::Column::TakedownRef,
            Expr::value(takedown_ref.map(str::to_owned)),
        )
        .await
    }

    async fn delete_account(&self, did: &Did) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        let res = account::Entity::delete_by_id(did.as_str().to_owned())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("account"));
        }
        delete_sessions(&txn, did, None).await?;
        crate::oauth::forget_account(&txn, did).await?;
        account_signing_key::Entity::delete_by_id(did.as_str().to_owned())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        app_password::Entity::delete_many()
            .filter(app_password::Column::Did.eq(did.as_str()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        email_token::Entity::delete_many()
            .filter(email_token::Column::Did.eq(did.as_str()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        account_pref::Entity::delete_by_id(did.as_str().to_owned())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)
    }

    async fn update_password(&self, did: &Did, password_hash: &str) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        let res = account::Entity::update_many()
            .col_expr(account::Column::PasswordHash, Expr::value(password_hash))
            .filter(account::Column::Did.eq(did.as_str()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("account"));
        }
        delete_sessions(&txn, did, None).await?;
        crate::oauth::end_sessions(&txn, did).await?;
        txn.commit().await.map_err(db_err)
    }

    async fn update_email(&self, did: &Did, email: Option<&str>) -> Result<(), StoreError> {
        let email = email.map(aurora_core::store::normalize_email);
        let res = account::Entity::update_many()
            .col_expr(account::Column::Email, Expr::value(email))
            .col_expr(
                account::Column::EmailConfirmedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(account::Column::Did.eq(did.as_str()))
            .exec(self.reads())
            .await
            .map_err(unique_err)?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("account"));
        }
        Ok(())
    }

    async fn confirm_email(&self, did: &Did, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.update_account(did, account::Column::EmailConfirmedAt, Expr::value(at))
            .await
    }

    async fn create_refresh_token(&self, token: RefreshToken) -> Result<(), StoreError> {
        refresh_token::Entity::insert(refresh_token_row(&token))
            .exec_without_returning(self.reads())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_refresh_token(&self, id: &str) -> Result<Option<RefreshToken>, StoreError> {
        refresh_token::Entity::find_by_id(id.to_owned())
            .one(self.reads())
            .await
            .map_err(db_err)?
            .map(refresh_token_from_row)
            .transpose()
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<RefreshToken>, StoreError> {
        refresh_token::Entity::find()
            .filter(refresh_token::Column::SessionId.eq(session_id))
            .order_by_desc(refresh_token::Column::ExpiresAt)
            .order_by_desc(refresh_token::Column::Id)
            .one(self.reads())
            .await
            .map_err(db_err)?
            .map(refresh_token_from_row)
            .transpose()
    }

    async fn get_session_account(
        &self,
        session_id: &str,
    ) -> Result<Option<(RefreshToken, Account)>, StoreError> {
        // One query instead of two: this runs for every authenticated call.
        if let Some(sqlite) = self.native_sqlite()
            && let Ok(found) = sqlite.session_account(session_id)
        {
            return found
                .map(|(token, account)| {
                    Ok((refresh_token_from_row(token)?, account_from_row(account)?))
                })
                .transpose();
        }
        let of_account = refresh_token::Entity::belongs_to(account::Entity)
            .from(refresh_token::Column::Did)
            .to(account::Column::Did)
            .into();
        let row = refresh_token::Entity::find()
            .join(JoinType::InnerJoin, of_account)
            .filter(refresh_token::Column::SessionId.eq(session_id))
            .order_by_desc(refresh_token::Column::ExpiresAt)
            .order_by_desc(refresh_token::Column::Id)
            .select_also(account::Entity)
            .one(self.reads())
            .await
            .map_err(db_err)?;
        match row {
            Some((token, Some(account))) => Ok(Some((
                refresh_token_from_row(token)?,
                account_from_row(account)?,
            ))),
            _ => Ok(None),
        }
    }

    async fn rotate_refresh_token(
        &self,
        old_id: &str,
        new: RefreshToken,
    ) -> Result<Option<RefreshToken>, StoreError> {
        let txn = self.begin_write().await?;
        let Some(old) = refresh_token::Entity::find_by_id(old_id.to_owned())
            .one(&txn)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        // The delete decides between concurrent rotations: only one removes the row.
        let res = refresh_token::Entity::delete_by_id(old_id.to_owned())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if res.rows_affected != 1 {
            return Ok(None);
        }
        refresh_token::Entity::insert(refresh_token_row(&new))
            .exec_without_returning(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        refresh_token_from_row(old).map(Some)
    }

    async fn delete_refresh_token(&self, id: &str) -> Result<bool, StoreError> {
        let res = refresh_token::Entity::delete_by_id(id.to_owned())
            .exec(self.reads())
            .await
            .map_err(db_err)?;
        Ok(res.rows_affected > 0)
    }

    async fn delete_refresh_tokens(
        &self,
        did: &Did,
        app_password: Option<&str>,
    ) -> Result<u64, StoreError> {
        let txn = self.begin_write().await?;
        let n = delete_sessions(&txn, did, app_password).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn create_app_password(&self, app: AppPassword) -> Result<(), StoreError> {
        let row = app_password::ActiveModel {
            did: Set(app.did.as_str().to_owned()),
            name: Set(app.name.clone()),
            password_hash: Set(app.password_hash.clone()),
            privileged: Set(app.privileged),
            created_at: Set(app.created_at),
        };
        app_password::Entity::insert(row)
            .exec_without_returning(self.reads())
            .await
            .map_err(|e| match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::AlreadyExists {
                    field: "app password name",
                },
                _ => db_err(e),
            })?;
        Ok(())
    }

    async fn list_app_passwords(&self, did: &Did) -> Result<Vec<AppPassword>, StoreError> {
        app_password::Entity::find()
            .filter(app_password::Column::Did.eq(did.as_str()))
            .order_by_asc(app_password::Column::Name)
            .all(self.reads())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|row| {
                Ok(AppPassword {
                    did: convert::parse(row.did, Did::parse)?,
                    name: row.name,
                    password_hash: row.password_hash,
                    privileged: row.privileged,
                    created_at: row.created_at,
                })
            })
            .collect()
    }

    async fn delete_app_password(&self, did: &Did, name: &str) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        let res = app_password::Entity::delete_by_id((did.as_str().to_owned(), name.to_owned()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("app password"));
        }
        delete_sessions(&txn, did, Some(name)).await?;
        txn.commit().await.map_err(db_err)
    }

    async fn put_email_token(&self, token: EmailToken) -> Result<(), StoreError> {
        let row = email_token::ActiveModel {
            did: Set(token.did.as_str().to_owned()),
            purpose: Set(token.purpose.as_str().to_owned()),
            token: Set(token.token.clone()),
            requested_at: Set(token.requested_at),
        };
        email_token::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    email_token::Column::Did,
                    email_token::Column::Purpose,
                ])
                .update_columns([email_token::Column::Token, email_token::Column::RequestedAt])
                .to_owned(),
            )
            .exec_without_returning(self.reads())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn take_email_token(
        &self,
        did: &Did,
        purpose: EmailTokenPurpose,
        token: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let txn = self.begin_write().await?;
        let key = (did.as_str().to_owned(), purpose.as_str().to_owned());
        let Some(row) = email_token::Entity::find_by_id(key.clone())
            .one(&txn)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        if !aurora_core::store::constant_time_eq(row.token.as_bytes(), token.as_bytes()) {
            return Ok(None);
        }
        // The delete decides between concurrent takes (on Postgres the
        // loser waits for the winner's row lock, then deletes nothing); the
        // token is in the filter so that a token replaced meanwhile stays.
        let res = email_token::Entity::delete_many()
            .filter(email_token::Column::Did.eq(key.0))
            .filter(email_token::Column::Purpose.eq(key.1))
            .filter(email_token::Column::Token.eq(token))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if res.rows_affected != 1 {
            return Ok(None);
        }
        txn.commit().await.map_err(db_err)?;
        Ok(Some(row.requested_at))
    }

    async fn take_email_token_by_value(
        &self,
        purpose: EmailTokenPurpose,
        token: &str,
    ) -> Result<Option<(Did, DateTime<Utc>)>, StoreError> {
        let txn = self.begin_write().await?;
        // Two rows would mean two accounts hold the token: ambiguous, so unknown.
        let rows = email_token::Entity::find()
            .filter(email_token::Column::Purpose.eq(purpose.as_str()))
            .filter(email_token::Column::Token.eq(token))
            .limit(2)
            .all(&txn)
            .await
            .map_err(db_err)?;
        let Ok([row]) = <[email_token::Model; 1]>::try_from(rows) else {
            return Ok(None);
        };
        let did = convert::parse(row.did.clone(), Did::parse)?;
        // The delete decides between concurrent takes: on Postgres the loser
        // waits for the winner's row lock, then finds the row gone. (The
        // token is in the filter so a token replaced meanwhile is kept.)
        let res = email_token::Entity::delete_many()
            .filter(email_token::Column::Did.eq(row.did))
            .filter(email_token::Column::Purpose.eq(purpose.as_str()))
            .filter(email_token::Column::Token.eq(token))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if res.rows_affected != 1 {
            return Ok(None);
        }
        txn.commit().await.map_err(db_err)?;
        Ok(Some((did, row.requested_at)))
    }

    async fn create_invite_codes(
        &self,
        codes: Vec<NewInviteCode>,
    ) -> Result<Vec<InviteCode>, StoreError> {
        let txn = self.begin_write().await?;
        let created = invite::create(&txn, codes).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(created)
    }

    async fn get_invite_code(&self, code: &str) -> Result<Option<InviteCode>, StoreError> {
        let rows = invite_code::Entity::find_by_id(code.to_owned())
            .all(self.reads())
            .await
            .map_err(db_err)?;
        Ok(invite::with_uses(self.reads(), rows).await?.pop())
    }

    async fn list_invite_codes(
        &self,
        sort: InviteCodeSort,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<InviteCode>, Option<String>), StoreError> {
        invite::list(self.reads(), sort, cursor, limit).await
    }

    async fn account_invite_codes(&self, for_account: &str) -> Result<Vec<InviteCode>, StoreError> {
        let rows = invite_code::Entity::find()
            .filter(invite_code::Column::ForAccount.eq(for_account))
            .order_by_desc(invite_code::Column::CreatedAt)
            .order_by_asc(invite_code::Column::Code)
            .all(self.reads())
            .await
            .map_err(db_err)?;
        invite::with_uses(self.reads(), rows).await
    }

    async fn disable_invite_codes(
        &self,
        codes: &[String],
        accounts: &[String],
    ) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        invite::disable(&txn, codes, accounts).await?;
        txn.commit().await.map_err(db_err)
    }

    async fn get_preferences(&self, did: &Did) -> Result<Vec<serde_json::Value>, StoreError> {
        // The account and its preferences in one read.
        let query = Query::select()
            .column((account::Entity, account::Column::Did))
            .column((account_pref::Entity, account_pref::Column::Value))
            .from(account::Entity)
            .left_join(
                account_pref::Entity,
                Expr::col((account_pref::Entity, account_pref::Column::Did))
                    .equals((account::Entity, account::Column::Did)),
            )
            .and_where(Expr::col((account::Entity, account::Column::Did)).eq(did.as_str()))
            .to_owned();
        let row = self
            .connection()
            .query_one(&query)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("account"))?;
        let Some(value) = row.try_get::<Option<String>>("", "value").map_err(db_err)? else {
            return Ok(Vec::new());
        };
        serde_json::from_str(&value)
            .map_err(|e| StoreError::Corrupt(format!("preferences of {did}: {e}")))
    }

    async fn put_preferences(
        &self,
        did: &Did,
        preferences: Vec<serde_json::Value>,
    ) -> Result<(), StoreError> {
        let value =
            serde_json::to_string(&preferences).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let txn = self.begin_write().await?;
        // On Postgres the key-share lock keeps a concurrent delete_account
        // from committing in between and leaving the preferences behind;
        // SQLite runs one writer at a time.
        let found = account::Entity::find_by_id(did.as_str().to_owned())
            .select_only()
            .column(account::Column::Did)
            .lock(LockType::KeyShare)
            .into_tuple::<String>()
            .one(&txn)
            .await
            .map_err(db_err)?;
        if found.is_none() {
            return Err(StoreError::NotFound("account"));
        }
        let row = account_pref::ActiveModel {
            did: Set(did.as_str().to_owned()),
            value: Set(value),
            updated_at: Set(Utc::now()),
        };
        account_pref::Entity::insert(row)
            .on_conflict(
                OnConflict::column(account_pref::Column::Did)
                    .update_columns([account_pref::Column::Value, account_pref::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)
    }
}
