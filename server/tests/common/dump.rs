//! A dump of a whole database, table by table, for tests that must show a
//! database unchanged (hostile input) or complete (after a crash).

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

/// Every table's rows, each rendered as one line of text, sorted.
pub(crate) type Dump = BTreeMap<String, Vec<String>>;

/// Opens `url` (`sqlite://…` or `postgres://…`) beside the running server.
pub(crate) async fn connect(url: &str) -> DatabaseConnection {
    Database::connect(url).await.unwrap()
}

/// The `sqlite://` URL of a server's default database in `data_dir`.
pub(crate) fn sqlite_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}", data_dir.join("aurora.sqlite").display())
}

/// Dumps every table of `db`.
pub(crate) async fn dump(db: &DatabaseConnection) -> Dump {
    let backend = db.get_database_backend();
    let mut out = Dump::new();
    for table in strings(db, &tables_sql(backend)).await {
        let sql = match backend {
            DbBackend::Sqlite => {
                let columns = strings(
                    db,
                    &format!("SELECT name AS v FROM pragma_table_info('{table}') ORDER BY cid"),
                )
                .await;
                let row = columns
                    .iter()
                    .map(|c| format!("quote(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(" || ',' || ");
                format!("SELECT {row} AS v FROM \"{table}\"")
            }
            _ => format!("SELECT CAST(t AS text) AS v FROM \"{table}\" t"),
        };
        let mut rows = strings(db, &sql).await;
        rows.sort();
        out.insert(table, rows);
    }
    out
}

fn tables_sql(backend: DbBackend) -> String {
    match backend {
        DbBackend::Sqlite => "SELECT name AS v FROM sqlite_master WHERE type = 'table' \
                              AND name NOT LIKE 'sqlite_%' ORDER BY name"
            .to_owned(),
        _ => "SELECT table_name::text AS v FROM information_schema.tables \
              WHERE table_schema = 'public' ORDER BY table_name"
            .to_owned(),
    }
}

async fn strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            row.try_get::<Option<String>>("", "v")
                .unwrap()
                .unwrap_or_default()
        })
        .collect()
}

/// The tables whose rows differ between `before` and `after`, with a few
/// of the rows that differ, for a readable assertion message.
pub(crate) fn differences(before: &Dump, after: &Dump) -> Vec<String> {
    let mut out = Vec::new();
    for (table, rows) in after {
        let old = before.get(table).cloned().unwrap_or_default();
        if &old != rows {
            let added: Vec<_> = rows.iter().filter(|r| !old.contains(r)).take(3).collect();
            let removed: Vec<_> = old.iter().filter(|r| !rows.contains(r)).take(3).collect();
            out.push(format!(
                "{table}: {} rows -> {} rows; added {added:?}; removed {removed:?}",
                old.len(),
                rows.len()
            ));
        }
    }
    out
}
