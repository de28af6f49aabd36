//! Invite codes on SQL: creation, sign-up consumption, listing and disabling.

use std::collections::HashMap;

use aurora_core::store::{InviteCode, InviteCodeSort, InviteCodeUse, NewInviteCode, StoreError};
use aurora_core::syntax::Did;
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, QueryFilter,
    QueryOrder, QuerySelect, SqlErr,
};

use crate::entity::{invite_code, invite_code_use};
use crate::{convert, db_err};

/// Rows per multi-row INSERT or IN list, well under the bind-parameter limits.
const CHUNK: usize = 500;

/// Consumes one use of `code` for the new account `did`, inside the
/// account's creation transaction. The guarded decrement is what decides
/// between concurrent sign-ups: on Postgres the second waits for the first's
/// row lock and then sees no use left; SQLite runs one writer at a time.
pub(crate) async fn consume(
    txn: &impl ConnectionTrait,
    code: &str,
    did: &Did,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let res = invite_code::Entity::update_many()
        .col_expr(
            invite_code::Column::AvailableUses,
            Expr::col(invite_code::Column::AvailableUses).sub(1),
        )
        .filter(invite_code::Column::Code.eq(code))
        .filter(invite_code::Column::Disabled.eq(false))
        .filter(invite_code::Column::AvailableUses.gt(0))
        .exec(txn)
        .await
        .map_err(db_err)?;
    if res.rows_affected != 1 {
        return Err(StoreError::InvalidInviteCode);
    }
    let row = invite_code_use::ActiveModel {
        code: Set(code.to_owned()),
        used_by: Set(did.as_str().to_owned()),
        used_at: Set(at.trunc_subsecs(6)),
    };
    // A DID that signs up again with the same code keeps its first use.
    invite_code_use::Entity::insert(row)
        .on_conflict_do_nothing_on([
            invite_code_use::Column::Code,
            invite_code_use::Column::UsedBy,
        ])
        .exec_without_returning(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Inserts `codes`, created now, and returns them as stored.
pub(crate) async fn create(
    txn: &impl ConnectionTrait,
    codes: Vec<NewInviteCode>,
) -> Result<Vec<InviteCode>, StoreError> {
    // Postgres keeps microseconds: store exactly what is returned.
    let now = Utc::now().trunc_subsecs(6);
    let created: Vec<InviteCode> = codes
        .into_iter()
        .map(|c| InviteCode {
            code: c.code,
            available_uses: c.available_uses,
            disabled: false,
            for_account: c.for_account,
            created_by: c.created_by,
            created_at: now,
            uses: Vec::new(),
        })
        .collect();
    for chunk in created.chunks(CHUNK) {
        let rows = chunk.iter().map(|c| invite_code::ActiveModel {
            code: Set(c.code.clone()),
            available_uses: Set(c.available_uses),
            disabled: Set(false),
            for_account: Set(c.for_account.clone()),
            created_by: Set(c.created_by.clone()),
            created_at: Set(c.created_at),
        });
        invite_code::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await
            .map_err(|e| match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::AlreadyExists {
                    field: "invite code",
                },
                _ => db_err(e),
            })?;
    }
    Ok(created)
}

fn code_from_row(row: invite_code::Model, uses: Vec<InviteCodeUse>) -> InviteCode {
    InviteCode {
        code: row.code,
        available_uses: row.available_uses,
        disabled: row.disabled,
        for_account: row.for_account,
        created_by: row.created_by,
        created_at: row.created_at,
        uses,
    }
}

/// The codes of `rows`, in order, each with its uses (oldest first).
pub(crate) async fn with_uses(
    conn: &impl ConnectionTrait,
    rows: Vec<invite_code::Model>,
) -> Result<Vec<InviteCode>, StoreError> {
    let mut uses: HashMap<String, Vec<InviteCodeUse>> = HashMap::new();
    for chunk in rows.chunks(CHUNK) {
        let found = invite_code_use::Entity::find()
            .filter(invite_code_use::Column::Code.is_in(chunk.iter().map(|r| r.code.clone())))
            .order_by_asc(invite_code_use::Column::UsedAt)
            .order_by_asc(invite_code_use::Column::UsedBy)
            .all(conn)
            .await
            .map_err(db_err)?;
        for u in found {
            uses.entry(u.code).or_default().push(InviteCodeUse {
                used_by: convert::parse(u.used_by, Did::parse)?,
                used_at: u.used_at,
            });
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let code_uses = uses.remove(&row.code).unwrap_or_default();
            code_from_row(row, code_uses)
        })
        .collect())
}

/// Where a page of [`list`] starts: after this code, in the sort's order.
enum Cursor {
    /// Created at this time (microseconds since the epoch), then this code.
    Recent(i64, String),
    /// Used this many times, then this code.
    Usage(i64, String),
}

impl Cursor {
    fn after(sort: InviteCodeSort, code: &InviteCode) -> Self {
        match sort {
            InviteCodeSort::Recent => {
                Self::Recent(code.created_at.timestamp_micros(), code.code.clone())
            }
            InviteCodeSort::Usage => Self::Usage(
                i64::try_from(code.uses.len()).unwrap_or(i64::MAX),
                code.code.clone(),
            ),
        }
    }

    fn encode(&self) -> String {
        match self {
            Self::Recent(t, code) => format!("r:{t}:{code}"),
            Self::Usage(n, code) => format!("u:{n}:{code}"),
        }
    }

    /// `None` for anything [`encode`](Self::encode) did not produce for `sort`.
    fn decode(sort: InviteCodeSort, s: &str) -> Option<Self> {
        let prefix = match sort {
            InviteCodeSort::Recent => "r:",
            InviteCodeSort::Usage => "u:",
        };
        let (n, code) = s.strip_prefix(prefix)?.split_once(':')?;
        let n: i64 = n.parse().ok()?;
        Some(match sort {
            InviteCodeSort::Recent => Self::Recent(n, code.to_owned()),
            InviteCodeSort::Usage => Self::Usage(n, code.to_owned()),
        })
    }
}

/// A page of codes in `sort` order, and the next page's cursor.
pub(crate) async fn list(
    conn: &impl ConnectionTrait,
    sort: InviteCodeSort,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<InviteCode>, Option<String>), StoreError> {
    if limit == 0 {
        return Ok((Vec::new(), None));
    }
    let cursor = match cursor.map(|c| Cursor::decode(sort, c)) {
        None => None,
        Some(Some(c)) => Some(c),
        // Not one of ours: nothing follows it.
        Some(None) => return Ok((Vec::new(), None)),
    };
    let use_count = Expr::cust(
        "(SELECT COUNT(*) FROM invite_code_use WHERE invite_code_use.code = invite_code.code)",
    );
    let mut query = invite_code::Entity::find();
    match cursor {
        None => {}
        Some(Cursor::Recent(micros, code)) => {
            let Some(t) = DateTime::<Utc>::from_timestamp_micros(micros) else {
                return Ok((Vec::new(), None));
            };
            query = query.filter(
                Condition::any()
                    .add(invite_code::Column::CreatedAt.lt(t))
                    .add(
                        Condition::all()
                            .add(invite_code::Column::CreatedAt.eq(t))
                            .add(invite_code::Column::Code.gt(code)),
                    ),
            );
        }
        Some(Cursor::Usage(n, code)) => {
            query = query.filter(
                Condition::any().add(use_count.clone().lt(n)).add(
                    Condition::all()
                        .add(use_count.clone().eq(n))
                        .add(invite_code::Column::Code.gt(code)),
                ),
            );
        }
    }
    query = match sort {
        InviteCodeSort::Recent => query.order_by_desc(invite_code::Column::CreatedAt),
        InviteCodeSort::Usage => query.order_by(use_count, Order::Desc),
    };
    // One row more than asked tells whether another page follows.
    let mut rows = query
        .order_by_asc(invite_code::Column::Code)
        .limit(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .all(conn)
        .await
        .map_err(db_err)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let codes = with_uses(conn, rows).await?;
    let next = if more {
        codes.last().map(|c| Cursor::after(sort, c).encode())
    } else {
        None
    };
    Ok((codes, next))
}

/// Disables `codes` and every code made for one of `accounts`.
pub(crate) async fn disable(
    txn: &impl ConnectionTrait,
    codes: &[String],
    accounts: &[String],
) -> Result<(), StoreError> {
    let lists = [
        (invite_code::Column::Code, codes),
        (invite_code::Column::ForAccount, accounts),
    ];
    for (column, values) in lists {
        for chunk in values.chunks(CHUNK) {
            invite_code::Entity::update_many()
                .col_expr(invite_code::Column::Disabled, Expr::value(true))
                .filter(column.is_in(chunk.iter().cloned()))
                .exec(txn)
                .await
                .map_err(db_err)?;
        }
    }
    Ok(())
}
