//! `AccountStore` on SQL.

use async_trait::async_trait;
use aurora_core::store::{
    Account, AccountLookup, AccountStatus, AccountStore, NewAccount, StoreError,
};
use aurora_core::syntax::{Did, Handle};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};

use crate::entity::account;
use crate::{SqlStore, convert, db_err};

fn account_from_row(row: account::Model) -> Result<Account, StoreError> {
    Ok(Account {
        did: convert::parse(row.did, Did::parse)?,
        handle: convert::parse(row.handle, Handle::parse)?,
        email: row.email,
        password_hash: row.password_hash,
        status: row.status.parse()?,
        created_at: row.created_at,
        email_confirmed_at: row.email_confirmed_at,
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
            .exec(self.connection())
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
        let account = new.into_account();
        let row = account::ActiveModel {
            did: Set(account.did.as_str().to_owned()),
            handle: Set(account.handle.as_str().to_owned()),
            email: Set(account.email.clone()),
            password_hash: Set(account.password_hash.clone()),
            status: Set(account.status.as_str().to_owned()),
            created_at: Set(account.created_at),
            email_confirmed_at: Set(None),
        };
        account::Entity::insert(row)
            .exec_without_returning(self.connection())
            .await
            .map_err(unique_err)?;
        Ok(account)
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
            .one(self.connection())
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
            .all(self.connection())
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

    async fn delete_account(&self, did: &Did) -> Result<(), StoreError> {
        let res = account::Entity::delete_by_id(did.as_str().to_owned())
            .exec(self.connection())
            .await
            .map_err(db_err)?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("account"));
        }
        Ok(())
    }
}
