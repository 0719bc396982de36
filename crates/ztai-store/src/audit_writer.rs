//! The audit log's one writer, as the SQLite backend provides it.
//!
//! Two writers would fork the hash chain (both extend the same head), so the backend, not its
//! callers, guarantees there is one: opening a writer takes an exclusive lock that a second
//! process (or a second writer in this one) cannot get. The writer also owns the housekeeping
//! SQLite needs and no other backend would: the WAL is copied into the database between
//! batches, never inside a commit a request is waiting for, partly on a background thread with
//! its own connection, so the file stays bounded even when the writer never pauses. Callers see
//! this only as `AuditWriter::maintain`.
//!
//! Why a second thread: a checkpoint (two fsyncs) done inline held up the next request's record
//! for ~10 ms every thousand records, which was the gateway's whole p99 at one connection. A copy
//! made beside a busy writer leaves the frames committed during it, and the WAL only starts over
//! once every frame is copied, so after each background copy the writer copies that remainder
//! itself (a few frames), and after `WAL_RESTART_EVERY` records regardless.

use crate::{AuditLeaf, AuditRow, CheckpointRow, Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The log's only writer: appends, checkpoints and the reads it needs to resume.
///
/// Contract: at most one exists per log at a time, across processes (`Backend::audit_writer`
/// refuses a second with `StoreError::WriterBusy`); an append is atomic (all rows durable
/// together, or none) and durable on return; rows are appended in sequence order with no gap.
pub trait AuditWriter: Send {
    /// The last row of the chain (its `seq` and `hash`), if any.
    fn head(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError>;
    fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError>;
    /// Leaf material for rows with `seq > after`, oldest first, at most `limit`.
    fn leaves_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, AuditLeaf)>, StoreError>;
    /// Appends rows in one transaction.
    fn append(&mut self, rows: &[AuditRow]) -> Result<(), StoreError>;
    /// Stores a signed checkpoint; one per tree size.
    fn insert_checkpoint(&mut self, c: &CheckpointRow) -> Result<(), StoreError>;
    /// Housekeeping, called between batches; cheap when nothing is due. A failure is logged
    /// and retried later: it never loses a record.
    fn maintain(&mut self);
}

/// Start a background WAL copy once this many records have been committed since the last...
const WAL_COPY_EVERY: usize = 1_000;
/// ...and checkpoint on the writer's own connection once this many have, so the WAL starts over
/// and stays bounded even when the writer never pauses.
const WAL_RESTART_EVERY: usize = 20_000;
/// How long opening a writer waits for one that is shutting down to let go of the lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);

pub(crate) struct SqliteAuditWriter {
    /// Held for the writer's life: one chain has one writer.
    _lock: std::fs::File,
    store: Store,
    wal: WalCopier,
    /// Records committed since the last background WAL copy was started...
    since_wal_copy: usize,
    /// ...and since the writer last checkpointed the WAL itself (which lets it start over).
    since_wal_restart: usize,
}

impl SqliteAuditWriter {
    pub(crate) fn open(db: &Path) -> Result<Self, StoreError> {
        let lock = writer_lock(db)?;
        let store = Store::open(db)?;
        // This writer checkpoints the WAL itself, between batches (`maintain`), never inside a
        // commit a request is waiting for.
        store.disable_autocheckpoint()?;
        let wal = WalCopier::start(db)?;
        Ok(SqliteAuditWriter {
            _lock: lock,
            store,
            wal,
            since_wal_copy: 0,
            since_wal_restart: 0,
        })
    }
}

impl AuditWriter for SqliteAuditWriter {
    fn head(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        self.store.audit_head()
    }

    fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        self.store.latest_checkpoint()
    }

    fn leaves_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, AuditLeaf)>, StoreError> {
        self.store.audit_leaves_after(after, limit)
    }

    fn append(&mut self, rows: &[AuditRow]) -> Result<(), StoreError> {
        self.store.append_audit_batch(rows)?;
        self.since_wal_copy = self.since_wal_copy.saturating_add(rows.len());
        self.since_wal_restart = self.since_wal_restart.saturating_add(rows.len());
        Ok(())
    }

    fn insert_checkpoint(&mut self, c: &CheckpointRow) -> Result<(), StoreError> {
        self.store.insert_checkpoint(c)
    }

    /// Asks the copier for a background WAL copy every `WAL_COPY_EVERY` records. After each copy
    /// it has finished (and every `WAL_RESTART_EVERY` records in any case, should the copier fall
    /// behind) checkpoints here: with no other writer that copies the rest of the WAL, a few
    /// frames, and the next commit starts the WAL over, so the file stays bounded.
    fn maintain(&mut self) {
        let copied = self.wal.copied.swap(false, Ordering::Relaxed);
        if copied || self.since_wal_restart >= WAL_RESTART_EVERY {
            // Waits for a background copy in progress: two checkpoints at once would make this one
            // return busy without copying anything.
            let _guard = self.wal.running.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = self.store.checkpoint(false) {
                tracing::warn!(error = %e, "audit WAL checkpoint failed; will retry");
            }
            self.since_wal_restart = 0;
            self.since_wal_copy = 0;
        } else if self.since_wal_copy >= WAL_COPY_EVERY && self.wal.request() {
            self.since_wal_copy = 0;
        }
    }
}

impl Drop for SqliteAuditWriter {
    /// The writer's last act: copy what is left of the WAL, so the database file alone holds
    /// every record.
    fn drop(&mut self) {
        let _guard = self.wal.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.store.checkpoint(false) {
            tracing::warn!(error = %e, "final audit WAL checkpoint failed");
        }
    }
}

/// The background WAL copier: a thread with its own connection to the log's database.
struct WalCopier {
    wake: std::sync::mpsc::SyncSender<()>,
    /// Held while a checkpoint runs, on either connection.
    running: Arc<Mutex<()>>,
    /// Set when a background copy has finished: the writer then copies the few frames committed
    /// meanwhile itself, which lets the WAL start over.
    copied: Arc<AtomicBool>,
}

impl WalCopier {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let store = Store::open(path)?;
        store.disable_autocheckpoint()?;
        // One pending request is enough: a copy started later covers everything committed before.
        let (wake, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let running = Arc::new(Mutex::new(()));
        let lock = running.clone();
        let copied = Arc::new(AtomicBool::new(false));
        let done = copied.clone();
        std::thread::Builder::new()
            .name("ztai-audit-wal".into())
            .spawn(move || {
                // Ends when the writer (the only sender) is dropped.
                while asked.recv().is_ok() {
                    let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                    match store.checkpoint(false) {
                        Ok(_) => done.store(true, Ordering::Relaxed),
                        Err(e) => tracing::warn!(error = %e, "audit WAL copy failed; will retry"),
                    }
                }
            })
            .map_err(|e| StoreError::Thread(format!("cannot start the WAL copier: {e}")))?;
        Ok(WalCopier {
            wake,
            running,
            copied,
        })
    }

    /// Asks for a copy; false when one is already pending (ask again later).
    fn request(&self) -> bool {
        self.wake.try_send(()).is_ok()
    }
}

/// Takes the exclusive lock that makes this the log's only writer. An offline command on a data
/// directory a gateway is serving is refused. A writer that is still shutting down (its handle
/// just dropped) gets a few seconds to let go.
fn writer_lock(db: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".writer-lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Lock {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::WriterBusy {
                    path: db.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Lock {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
}
