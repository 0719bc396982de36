//! The SQLite backend as the gateway holds it: a pool of connections to one file.
//!
//! A single connection behind a mutex made every store call wait for every other, so a
//! whole-log `audit verify` held up key checks and approvals. SQLite in WAL mode lets any number
//! of readers run beside one writer, so the backend keeps a small pool (r2d2) and each call takes
//! a connection for its own duration; writers still queue inside SQLite (`busy_timeout`), which
//! is its single-writer rule, not ours. Each connection is a `Store`, opened (and migrated) the
//! same way; the first is opened before the pool exists, so a bad path or an unreadable schema
//! is reported at once with its own message instead of as a pool timeout.

use crate::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connections kept open at most: enough for the gateway's blocking threads that touch the store
/// at once (request paths, the revocation poll, admin calls, exporters), few enough that
/// SQLite's per-connection page cache stays small.
pub const DEFAULT_POOL_SIZE: u32 = 8;

/// How long a call waits for a free connection before the store counts as failed.
pub const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `Store` connections to one file for r2d2.
#[derive(Debug)]
pub(crate) struct Manager {
    path: PathBuf,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Store;
    type Error = StoreError;

    fn connect(&self) -> Result<Store, StoreError> {
        Store::open(&self.path)
    }

    fn is_valid(&self, conn: &mut Store) -> Result<(), StoreError> {
        conn.ping()
    }

    fn has_broken(&self, _conn: &mut Store) -> bool {
        // A SQLite connection is a file handle: it does not break the way a socket does, and a
        // failing query reports its own error.
        false
    }
}

/// The pooled SQLite backend; it implements every trait of `crate::contracts`.
#[derive(Clone)]
pub struct Sqlite {
    pool: r2d2::Pool<Manager>,
    path: PathBuf,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish()
    }
}

impl Sqlite {
    /// Opens (creating and migrating if needed) the database at `path`, with the default pool.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, DEFAULT_POOL_SIZE)
    }

    /// As `open`, keeping at most `size` connections (at least one).
    pub fn open_with(path: &Path, size: u32) -> Result<Self, StoreError> {
        let first = Store::open(path)?;
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // Checking a connection before each call would double the cost of the cheapest
            // calls; `has_broken` explains why it is not needed.
            .test_on_check_out(false)
            .error_handler(Box::new(LogErrors))
            .build_unchecked(Manager {
                path: path.to_path_buf(),
            });
        let sqlite = Sqlite {
            pool,
            path: path.to_path_buf(),
        };
        // `first` only proved that the file opens and is at the current schema; r2d2 cannot adopt
        // it, so the pool opens its own as calls need them.
        drop(first);
        Ok(sqlite)
    }

    /// The file this backend serves.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection for one call; it returns to the pool when dropped.
    pub(crate) fn conn(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        self.pool.get().map_err(|e| StoreError::Busy {
            waited: CHECKOUT_TIMEOUT,
            message: e.to_string(),
        })
    }
}

impl crate::Backend for Sqlite {
    fn ping(&self) -> Result<(), StoreError> {
        self.conn()?.ping()
    }

    fn audit_writer(&self) -> Result<Box<dyn crate::AuditWriter>, StoreError> {
        Ok(Box::new(crate::audit_writer::SqliteAuditWriter::open(
            &self.path,
        )?))
    }
}

/// Sends r2d2's background connection errors to our log instead of the `log` crate's.
#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<StoreError> for LogErrors {
    fn handle_error(&self, error: StoreError) {
        tracing::warn!(error = %error, "cannot open a store connection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn a_call_in_progress_does_not_hold_up_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("ztai.db")).unwrap();
        // A long call (a whole-log verification) holds its connection for its duration; with one
        // connection behind a mutex, this thread would now wait for itself forever.
        let held = store.conn().unwrap();
        store.meta_set("k", "v").unwrap();
        assert_eq!(store.meta_get("k").unwrap().as_deref(), Some("v"));
        drop(held);
    }

    #[test]
    fn a_bad_path_is_reported_at_open_with_its_own_message() {
        let dir = tempfile::tempdir().unwrap();
        let e = Sqlite::open(&dir.path().join("no/such/dir/ztai.db")).unwrap_err();
        assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
        assert!(e.to_string().contains("no/such/dir"), "{e}");
    }

    #[test]
    fn a_second_audit_writer_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("ztai.db")).unwrap();
        let first = store.audit_writer().unwrap();
        let e = store.audit_writer().err().unwrap();
        assert!(matches!(e, StoreError::WriterBusy { .. }), "{e:?}");
        drop(first);
        assert!(store.audit_writer().is_ok());
    }
}
