//! For tests that play the attacker or the failing disk: raw SQL on a store's file, so tests in
//! other crates can tamper with a store without naming its database driver. Nothing in the
//! product calls this; it is public only because integration tests live in other crates.

use crate::StoreError;
use rusqlite::{Connection, params};
use std::path::Path;

/// A bare connection to a SQLite store file, with no schema step and no pool.
#[derive(Debug)]
pub struct RawSqlite {
    conn: Connection,
}

impl RawSqlite {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(RawSqlite { conn })
    }

    /// Runs one statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str) -> Result<usize, StoreError> {
        Ok(self.conn.execute(sql, [])?)
    }

    /// Runs several statements separated by `;`.
    pub fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    /// The integer in the first column of the first row `sql` returns.
    pub fn query_i64(&self, sql: &str) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
    }

    /// Rewrites the chain fields of one audit row, as a forger who knows the format would.
    pub fn set_audit_hashes(
        &self,
        seq: i64,
        prev_hash: &[u8],
        hash: &[u8],
        leaf_hash: &[u8],
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE audit_log SET prev_hash = ?1, hash = ?2, leaf_hash = ?3 WHERE seq = ?4",
            params![prev_hash, hash, leaf_hash, seq],
        )?;
        Ok(())
    }
}
