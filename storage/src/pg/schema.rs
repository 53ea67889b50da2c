//! Versioned SQL migrations: applied in order at start (or by `engine migrate`), each in
//! the same transaction as its row in `schema_migrations`, under an advisory lock so
//! nodes starting together migrate once.

use tokio_postgres::Client;

use crate::error::StorageError;

/// The migrations this build knows, in order: version, name, SQL.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "records",
        include_str!("../../migrations/0001_records.sql"),
    ),
    (
        2,
        "one_order_per_request",
        include_str!("../../migrations/0002_one_order_per_request.sql"),
    ),
    (
        3,
        "bodies_in_storage_layouts",
        include_str!("../../migrations/0003_bodies_in_storage_layouts.sql"),
    ),
    (
        4,
        "transitions_without_index_writes",
        include_str!("../../migrations/0004_transitions_without_index_writes.sql"),
    ),
    (
        5,
        "gateway_ledger",
        include_str!("../../migrations/0005_gateway_ledger.sql"),
    ),
];

/// The schema version this build writes.
pub const PG_SCHEMA_VERSION: u32 = 5;

/// The advisory lock key migrations hold (any fixed number; "SPEEDY" in ASCII).
const MIGRATION_LOCK: i64 = 0x5350_4545_4459;

/// Brings the database to [`PG_SCHEMA_VERSION`]; returns the version it was at (0 for
/// an empty database). A database from a newer build is refused.
pub(crate) async fn migrate(client: &Client) -> Result<u32, StorageError> {
    client.batch_execute("BEGIN").await?;
    let result = migrate_in_transaction(client).await;
    match result {
        Ok(found) => {
            client.batch_execute("COMMIT").await?;
            Ok(found)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn migrate_in_transaction(client: &Client) -> Result<u32, StorageError> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let found = stored_version(client).await?;
    if found > PG_SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found,
            supported: PG_SCHEMA_VERSION,
        });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > found) {
        client.batch_execute(sql).await.map_err(|e| {
            let why = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.to_string());
            StorageError::Schema(format!("migration {version} ({name}) failed: {why}"))
        })?;
        client
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&(*version as i32), name],
            )
            .await?;
        tracing::info!(version, name, "applied a postgres migration");
    }
    Ok(found)
}

/// The newest migration applied (0 when none).
pub(crate) async fn stored_version(client: &Client) -> Result<u32, StorageError> {
    let row = client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?;
    let version: i32 = row.get(0);
    Ok(u32::try_from(version).unwrap_or(0))
}
