//! The group-commit writer thread.

use crate::{AuditError, GENESIS_HASH, chain_hash};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};
use ztai_core::{AuditRecord, Decision};
use ztai_store::{AuditRow, Store};

/// Tuning for the writer.
#[derive(Debug, Clone)]
pub struct AuditLogConfig {
    /// The SQLite file.
    pub path: PathBuf,
    /// Most records per transaction.
    pub max_batch: usize,
    /// Records that may wait for the writer before appends apply back-pressure.
    pub queue: usize,
}

impl AuditLogConfig {
    pub fn new(path: PathBuf) -> Self {
        AuditLogConfig {
            path,
            max_batch: 1024,
            queue: 65_536,
        }
    }
}

/// A record already encoded by the request task, so the single writer thread only hashes and
/// inserts.
struct Job {
    record_id: String,
    time: String,
    principal: String,
    action: String,
    decision: &'static str,
    json: String,
    done: oneshot::Sender<Result<i64, AuditError>>,
}

/// Handle to the audit log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    appended: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
}

impl AuditLog {
    /// Opens the log and starts its writer thread.
    pub fn open(config: AuditLogConfig) -> Result<Self, AuditError> {
        let store = Store::open(&config.path).map_err(|e| AuditError::Open(e.to_string()))?;
        // The writer checkpoints the WAL itself, between batches (see `Writer::maybe_checkpoint`),
        // never inside a commit a request is waiting for.
        store
            .disable_autocheckpoint()
            .map_err(|e| AuditError::Open(e.to_string()))?;
        let head = store
            .audit_head()
            .map_err(|e| AuditError::Open(e.to_string()))?;
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            store,
            rx,
            stats: stats.clone(),
            max_batch: config.max_batch.max(1),
            seq: head.as_ref().map(|(s, _)| *s).unwrap_or(0),
            head: head
                .map(|(_, h)| h)
                .unwrap_or_else(|| GENESIS_HASH.to_vec()),
            since_checkpoint: 0,
        };
        std::thread::Builder::new()
            .name("ztai-audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| AuditError::Open(format!("cannot start the writer thread: {e}")))?;
        Ok(AuditLog { tx, stats })
    }

    /// Appends a record and waits until it is durable; returns its sequence number.
    pub async fn append(&self, record: AuditRecord) -> Result<i64, AuditError> {
        let json = serde_json::to_string(&record).map_err(|e| AuditError::Encode(e.to_string()))?;
        let (done, wait) = oneshot::channel();
        let job = Job {
            json,
            decision: match record.decision {
                Decision::Allow => "allow",
                Decision::Deny => "deny",
            },
            record_id: record.id,
            time: record.time,
            principal: record.principal,
            action: record.action,
            done,
        };
        self.tx
            .send(job)
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        wait.await.map_err(|_| AuditError::WriterStopped)?
    }

    /// Records made durable since start.
    pub fn appended(&self) -> u64 {
        self.stats.appended.load(Ordering::Relaxed)
    }

    /// Records that could not be made durable since start.
    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Transactions committed since start.
    pub fn batches(&self) -> u64 {
        self.stats.batches.load(Ordering::Relaxed)
    }
}

struct Writer {
    store: Store,
    rx: mpsc::Receiver<Job>,
    stats: Arc<Stats>,
    max_batch: usize,
    seq: i64,
    head: Vec<u8>,
    /// Records committed since the last checkpoint.
    since_checkpoint: usize,
}

/// How long a busy writer waits for more records before committing.
const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_micros(150);

/// Checkpoint when the queue is empty and this many records have accumulated...
const CHECKPOINT_IDLE: usize = 1_000;
/// ...or regardless of the queue once this many have, so the WAL stays bounded under saturation.
const CHECKPOINT_FORCED: usize = 20_000;

impl Writer {
    fn run(mut self) {
        let mut jobs: Vec<Job> = Vec::with_capacity(self.max_batch);
        let mut last_batch = 0usize;
        while let Some(first) = self.rx.blocking_recv() {
            jobs.push(first);
            self.drain(&mut jobs);
            // Commit delay: when the last batch showed concurrent writers, wait a moment for
            // more records so one transaction carries many. A lone request (batches of one)
            // never waits.
            if last_batch > 1 && jobs.len() < self.max_batch {
                std::thread::sleep(COMMIT_DELAY);
                self.drain(&mut jobs);
            }
            last_batch = jobs.len();
            self.commit(&mut jobs);
            self.maybe_checkpoint();
        }
        let _ = self.store.checkpoint(false);
    }

    fn drain(&mut self, jobs: &mut Vec<Job>) {
        while jobs.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
    }

    /// With no other writer on the database a passive checkpoint copies the whole WAL, and the
    /// next commit starts the WAL over: the file stays small and no commit pays for the copy.
    fn maybe_checkpoint(&mut self) {
        let idle = self.rx.is_empty();
        if (idle && self.since_checkpoint >= CHECKPOINT_IDLE)
            || self.since_checkpoint >= CHECKPOINT_FORCED
        {
            if let Err(e) = self.store.checkpoint(false) {
                tracing::warn!(error = %e, "audit WAL checkpoint failed; will retry");
            }
            self.since_checkpoint = 0;
        }
    }

    fn commit(&mut self, jobs: &mut Vec<Job>) {
        let mut rows = Vec::with_capacity(jobs.len());
        let mut head = self.head.clone();
        let mut seq = self.seq;
        for job in jobs.iter_mut() {
            seq += 1;
            let hash = chain_hash(&head, seq, &job.json);
            rows.push(AuditRow {
                seq,
                record_id: std::mem::take(&mut job.record_id),
                time: std::mem::take(&mut job.time),
                principal: std::mem::take(&mut job.principal),
                action: std::mem::take(&mut job.action),
                decision: job.decision.to_string(),
                record_json: std::mem::take(&mut job.json),
                prev_hash: head,
                hash: hash.to_vec(),
            });
            head = hash.to_vec();
        }
        let result = self.store.append_audit_batch(&rows);
        match &result {
            Ok(()) => {
                self.seq = seq;
                self.head = head;
                self.stats
                    .appended
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.since_checkpoint += rows.len();
            }
            Err(e) => {
                tracing::error!(error = %e, records = rows.len(), "audit append failed; refusing the requests it carried");
                self.stats
                    .failed
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
            }
        }
        for (job, row) in jobs.drain(..).zip(rows.iter()) {
            let answer = match &result {
                Ok(()) => Ok(row.seq),
                Err(e) => Err(AuditError::Append(e.to_string())),
            };
            // The requester may have gone (client disconnected); the record is durable anyway.
            let _ = job.done.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify_chain;
    use ztai_core::{AuditRecord, Decision, StageTimings};

    pub(crate) fn record(id: &str) -> AuditRecord {
        AuditRecord {
            id: id.into(),
            time: "2026-11-21T00:00:00Z".into(),
            instance: "test".into(),
            principal: "user:alice".into(),
            chain: vec!["user:alice".into()],
            action: "invoke".into(),
            resource: "Model::\"m\"".into(),
            decision: Decision::Allow,
            policies: vec!["p".into()],
            reason: String::new(),
            obligations: vec![],
            findings: vec![],
            status: 200,
            request_digest: String::new(),
            response_digest: String::new(),
            timings: StageTimings::default(),
            content: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_durable_chained_and_batched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let log = AuditLog::open(AuditLogConfig::new(path.clone())).unwrap();
        let mut tasks = Vec::new();
        for i in 0..500 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(record(&format!("r{i}"))).await
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=500).collect::<Vec<_>>());
        assert!(log.batches() <= 500);
        // Durable: another connection sees every record and the chain verifies.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.audit_count().unwrap(), 500);
        let report = verify_chain(&store).unwrap();
        assert_eq!(report.records, 500);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[tokio::test]
    async fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        {
            let log = AuditLog::open(AuditLogConfig::new(path.clone())).unwrap();
            assert_eq!(log.append(record("a")).await.unwrap(), 1);
        }
        let log = AuditLog::open(AuditLogConfig::new(path.clone())).unwrap();
        assert_eq!(log.append(record("b")).await.unwrap(), 2);
        let report = verify_chain(&Store::open(&path).unwrap()).unwrap();
        assert!(report.problems.is_empty());
    }

    #[tokio::test]
    async fn a_failing_store_refuses_the_append_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let log = AuditLog::open(AuditLogConfig::new(path.clone())).unwrap();
        log.append(record("ok")).await.unwrap();
        // Sabotage the table from outside, as a full disk or a hostile admin would.
        let conn = rusqlite_free::rename_table(&path, "audit_log", "audit_log_gone");
        let err = log.append(record("lost")).await.unwrap_err();
        assert!(matches!(err, AuditError::Append(_)), "{err:?}");
        assert_eq!(log.failed(), 1);
        drop(conn);
        rusqlite_free::rename_table(&path, "audit_log_gone", "audit_log");
        // The chain resumes from the last durable row: no gap, no fork.
        assert_eq!(log.append(record("again")).await.unwrap(), 2);
        let report = verify_chain(&Store::open(&path).unwrap()).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    /// Raw SQL from outside the store, standing in for a full disk or a hostile administrator.
    mod rusqlite_free {
        use std::path::Path;
        pub fn rename_table(path: &Path, from: &str, to: &str) -> rusqlite::Connection {
            let c = rusqlite::Connection::open(path).unwrap();
            c.execute_batch(&format!("ALTER TABLE {from} RENAME TO {to}"))
                .unwrap();
            c
        }
    }
}
