//! The group-commit writer thread: appends records to the hash chain, grows the Merkle tree
//! and signs checkpoints.
//!
//! Only this thread writes the log, so the sequence, the chain head and the Merkle frontier are
//! plain fields, never locks. Request tasks do the per-record work that parallelises (JSON
//! encoding, the leaf hash) before handing a record over; the writer hashes the chain link,
//! folds the leaf into the frontier (amortised two 64-byte hashes) and commits in batches.
//!
//! The backend's housekeeping (for SQLite, copying the WAL into the database) runs between
//! batches through `AuditWriter::maintain`, never inside a commit a request is waiting for; the
//! backend also guarantees this is the log's only writer (`ztai_store`'s `audit_writer`).

use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::{AuditError, GENESIS_HASH, chain_hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};
use ztai_core::{AuditRecord, Decision};
use ztai_store::{AuditLeaf, AuditRow, AuditWriter, Backend, CheckpointRow};

/// Tuning for the writer.
#[derive(Debug)]
pub struct AuditLogConfig {
    /// Most records per transaction.
    pub max_batch: usize,
    /// Records that may wait for the writer before appends apply back-pressure.
    pub queue: usize,
    /// Signs checkpoints; without one the log has a hash chain and a Merkle tree but publishes
    /// no signed tree heads.
    pub signer: Option<CheckpointSigner>,
    /// The checkpoint origin line: names this log.
    pub origin: String,
    /// Sign a checkpoint once this many records have been added since the last one...
    pub checkpoint_every: u64,
    /// ...or once this much time has passed with records added.
    pub checkpoint_interval: Duration,
}

impl Default for AuditLogConfig {
    fn default() -> Self {
        AuditLogConfig {
            max_batch: 1024,
            queue: 65_536,
            signer: None,
            origin: "ztai-audit".into(),
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// A record already encoded by the request task, so the single writer thread only hashes and
/// inserts.
struct Job {
    leaf: Hash,
    record_id: String,
    time: String,
    principal: String,
    action: String,
    decision: &'static str,
    json: String,
    done: oneshot::Sender<Result<i64, AuditError>>,
}

/// What the writer thread is asked to do.
enum Msg {
    Append(Job),
    /// Sign a checkpoint now if records were added since the last; answers with its note.
    Checkpoint(oneshot::Sender<Result<Option<String>, AuditError>>),
    /// A clock tick: sign a checkpoint if one is due by time.
    Tick,
}

/// Handle to the audit log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    appended: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_failures: AtomicU64,
}

impl AuditLog {
    /// Opens the log and starts its writer thread (and, with a signer, a clock thread that
    /// prompts time-based checkpoints).
    pub fn open(store: &dyn Backend, config: AuditLogConfig) -> Result<Self, AuditError> {
        let open = |e: ztai_store::StoreError| AuditError::Open(e.to_string());
        // The backend refuses a second writer (here or in another process): two would fork the
        // chain.
        let writer = store.audit_writer().map_err(open)?;
        let head = writer.head().map_err(open)?;
        let (frontier, last_checkpoint) = resume_frontier(writer.as_ref())?;
        let seq = head.as_ref().map(|(s, _)| *s).unwrap_or(0);
        if u64::try_from(seq).ok() != Some(frontier.size()) {
            return Err(AuditError::Open(format!(
                "the audit log's sequence ({seq}) and its Merkle tree ({} leaves) disagree; run `ztai audit verify`",
                frontier.size()
            )));
        }
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(Stats::default());
        let interval = config.checkpoint_interval;
        let signing = config.signer.is_some();
        let writer = Writer {
            store: writer,
            rx,
            stats: stats.clone(),
            max_batch: config.max_batch.max(1),
            seq,
            head: head
                .map(|(_, h)| h)
                .unwrap_or_else(|| GENESIS_HASH.to_vec()),
            frontier,
            signer: config.signer,
            origin: config.origin,
            checkpoint_every: config.checkpoint_every.max(1),
            checkpoint_interval: interval,
            last_checkpoint,
            last_checkpoint_at: Instant::now(),
        };
        std::thread::Builder::new()
            .name("ztai-audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| AuditError::Open(format!("cannot start the writer thread: {e}")))?;
        if signing {
            // The clock holds only a weak handle, so it never keeps the writer alive.
            let weak = tx.downgrade();
            let period = (interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
            std::thread::Builder::new()
                .name("ztai-audit-clock".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(period);
                        let Some(tx) = weak.upgrade() else { break };
                        // A full queue means the writer is busy and will check the time itself.
                        let _ = tx.try_send(Msg::Tick);
                    }
                })
                .map_err(|e| AuditError::Open(format!("cannot start the clock thread: {e}")))?;
        }
        Ok(AuditLog { tx, stats })
    }

    /// Signs a checkpoint now if records were added since the last one; returns its note, or
    /// `None` when there is nothing new or no signer is configured.
    pub async fn checkpoint_now(&self) -> Result<Option<String>, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Checkpoint(done))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        wait.await.map_err(|_| AuditError::WriterStopped)?
    }

    /// Appends a record and waits until it is durable; returns its sequence number.
    pub async fn append(&self, record: AuditRecord) -> Result<i64, AuditError> {
        let json = serde_json::to_string(&record).map_err(|e| AuditError::Encode(e.to_string()))?;
        let (done, wait) = oneshot::channel();
        let job = Job {
            leaf: leaf_hash(json.as_bytes()),
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
            .send(Msg::Append(job))
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

    /// Checkpoints signed since start.
    pub fn checkpoints(&self) -> u64 {
        self.stats.checkpoints.load(Ordering::Relaxed)
    }

    /// Checkpoints that could not be signed or stored since start.
    pub fn checkpoint_failures(&self) -> u64 {
        self.stats.checkpoint_failures.load(Ordering::Relaxed)
    }
}

/// The Merkle frontier at the log's head: from the latest checkpoint's stored frontier plus
/// the leaves after it, or from every leaf when there is no checkpoint.
fn resume_frontier(store: &dyn AuditWriter) -> Result<(Frontier, u64), AuditError> {
    let open = |e: ztai_store::StoreError| AuditError::Open(e.to_string());
    let latest = store.latest_checkpoint().map_err(open)?;
    let (mut frontier, mut after) = match &latest {
        Some(c) => {
            let size = u64::try_from(c.tree_size).unwrap_or(0);
            let peaks: Vec<Hash> = c
                .frontier
                .chunks(32)
                .filter_map(|p| Hash::try_from(p).ok())
                .collect();
            let f = Frontier::from_parts(size, peaks).ok_or_else(|| {
                AuditError::Open(format!(
                    "the checkpoint at size {size} has a damaged frontier; run `ztai audit verify`"
                ))
            })?;
            (f, c.tree_size)
        }
        None => (Frontier::new(), 0),
    };
    let last_checkpoint = frontier.size();
    loop {
        let leaves = store.leaves_after(after, 8192).map_err(open)?;
        let Some((last, _)) = leaves.last() else {
            break;
        };
        after = *last;
        for (_, leaf) in leaves {
            frontier.push(leaf_of(&leaf));
        }
    }
    Ok((frontier, last_checkpoint))
}

/// A stored leaf's hash; rows without one (schema version 1) are hashed from their JSON.
pub(crate) fn leaf_of(leaf: &AuditLeaf) -> Hash {
    match leaf {
        // A stored hash of the wrong length was tampered with; hashing it yields a leaf that
        // cannot match, so verification reports it rather than anything panicking here.
        AuditLeaf::Hash(h) => Hash::try_from(h.as_slice()).unwrap_or_else(|_| leaf_hash(h)),
        AuditLeaf::Json(j) => leaf_hash(j.as_bytes()),
    }
}

struct Writer {
    /// The log's one writer (the backend refuses a second).
    store: Box<dyn AuditWriter>,
    rx: mpsc::Receiver<Msg>,
    stats: Arc<Stats>,
    max_batch: usize,
    seq: i64,
    head: Vec<u8>,
    frontier: Frontier,
    signer: Option<CheckpointSigner>,
    origin: String,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    /// Tree size of the last signed checkpoint.
    last_checkpoint: u64,
    last_checkpoint_at: Instant,
}

/// How long a busy writer waits for more records before committing.
const COMMIT_DELAY: Duration = Duration::from_micros(150);

impl Writer {
    fn run(mut self) {
        let mut jobs: Vec<Job> = Vec::with_capacity(self.max_batch);
        let mut asks: Vec<oneshot::Sender<Result<Option<String>, AuditError>>> = Vec::new();
        let mut last_batch = 0usize;
        while let Some(first) = self.rx.blocking_recv() {
            self.take(first, &mut jobs, &mut asks);
            self.drain(&mut jobs, &mut asks);
            // Commit delay: when the last batch showed concurrent writers, wait a moment for
            // more records so one transaction carries many. A lone request (batches of one)
            // never waits.
            if last_batch > 1 && !jobs.is_empty() && jobs.len() < self.max_batch {
                std::thread::sleep(COMMIT_DELAY);
                self.drain(&mut jobs, &mut asks);
            }
            last_batch = jobs.len();
            if !jobs.is_empty() {
                self.commit(&mut jobs);
            }
            let due = self.frontier.size() > self.last_checkpoint
                && (self.frontier.size() - self.last_checkpoint >= self.checkpoint_every
                    || self.last_checkpoint_at.elapsed() >= self.checkpoint_interval);
            if !asks.is_empty() || due {
                let result = self.sign_checkpoint();
                for ask in asks.drain(..) {
                    let _ = ask.send(result.clone());
                }
            }
            self.store.maintain();
        }
        // Shutting down: the tail gets a signed head too (dropping the writer then does the
        // backend's last housekeeping and lets go of the log).
        let _ = self.sign_checkpoint();
    }

    fn take(
        &mut self,
        msg: Msg,
        jobs: &mut Vec<Job>,
        asks: &mut Vec<oneshot::Sender<Result<Option<String>, AuditError>>>,
    ) {
        match msg {
            Msg::Append(job) => jobs.push(job),
            Msg::Checkpoint(ask) => asks.push(ask),
            Msg::Tick => {}
        }
    }

    fn drain(
        &mut self,
        jobs: &mut Vec<Job>,
        asks: &mut Vec<oneshot::Sender<Result<Option<String>, AuditError>>>,
    ) {
        while jobs.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(msg) => self.take(msg, jobs, asks),
                Err(_) => break,
            }
        }
    }

    /// Signs and stores a checkpoint of the tree as it stands, if it grew since the last one.
    /// A failure is counted and logged; requests are not refused for it (their records are
    /// durable and chained), and the next checkpoint covers them.
    fn sign_checkpoint(&mut self) -> Result<Option<String>, AuditError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let size = self.frontier.size();
        if size == self.last_checkpoint {
            return Ok(None);
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.frontier.root(),
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        let note = signer.sign(&checkpoint);
        let row = CheckpointRow {
            tree_size: i64::try_from(size).unwrap_or(i64::MAX),
            root: checkpoint.root.to_vec(),
            time: checkpoint.time.clone(),
            note: note.clone(),
            frontier: self.frontier.peaks().concat(),
        };
        match self.store.insert_checkpoint(&row) {
            Ok(()) => {
                self.last_checkpoint = size;
                self.last_checkpoint_at = Instant::now();
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                Ok(Some(note))
            }
            Err(e) => {
                self.stats
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, size, "cannot store the audit checkpoint; will retry");
                Err(AuditError::Append(format!(
                    "cannot store the checkpoint: {e}"
                )))
            }
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
                leaf_hash: Some(job.leaf.to_vec()),
            });
            head = hash.to_vec();
        }
        let result = self.store.append(&rows);
        match &result {
            Ok(()) => {
                self.seq = seq;
                self.head = head;
                for job in jobs.iter() {
                    self.frontier.push(job.leaf);
                }
                self.stats
                    .appended
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
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
    use ztai_store::AuditStore;

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
            client: String::new(),
            credential: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_when_every_record_is_its_own_commit() {
        // One request at a time: a transaction per record, ~3 pages of WAL each. Without the
        // copier and the writer's own checkpoints the WAL would hold all of them (~70 MB).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let log = AuditLog::open(
            &ztai_store::Sqlite::open(&path).unwrap(),
            AuditLogConfig::default(),
        )
        .unwrap();
        for i in 0..6_000 {
            log.append(record(&format!("r{i}"))).await.unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("a.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 32 << 20, "WAL grew to {wal} bytes");
        drop(log);
        let store = ztai_store::Sqlite::open(&path).unwrap();
        let report = verify_chain(&store).unwrap();
        assert_eq!(report.records, 6_000);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_durable_chained_and_batched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let log = AuditLog::open(
            &ztai_store::Sqlite::open(&path).unwrap(),
            AuditLogConfig::default(),
        )
        .unwrap();
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
        let store = ztai_store::Sqlite::open(&path).unwrap();
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
            let log = AuditLog::open(
                &ztai_store::Sqlite::open(&path).unwrap(),
                AuditLogConfig::default(),
            )
            .unwrap();
            assert_eq!(log.append(record("a")).await.unwrap(), 1);
        }
        let log = AuditLog::open(
            &ztai_store::Sqlite::open(&path).unwrap(),
            AuditLogConfig::default(),
        )
        .unwrap();
        assert_eq!(log.append(record("b")).await.unwrap(), 2);
        let report = verify_chain(&ztai_store::Sqlite::open(&path).unwrap()).unwrap();
        assert!(report.problems.is_empty());
    }

    #[tokio::test]
    async fn a_failing_store_refuses_the_append_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let log = AuditLog::open(
            &ztai_store::Sqlite::open(&path).unwrap(),
            AuditLogConfig::default(),
        )
        .unwrap();
        log.append(record("ok")).await.unwrap();
        // Sabotage the table from outside, as a full disk or a hostile admin would.
        let conn = ztai_store::testing::RawSqlite::open(&path).unwrap();
        conn.execute_batch("ALTER TABLE audit_log RENAME TO audit_log_gone")
            .unwrap();
        let err = log.append(record("lost")).await.unwrap_err();
        assert!(matches!(err, AuditError::Append(_)), "{err:?}");
        assert_eq!(log.failed(), 1);
        conn.execute_batch("ALTER TABLE audit_log_gone RENAME TO audit_log")
            .unwrap();
        // The chain resumes from the last durable row: no gap, no fork.
        assert_eq!(log.append(record("again")).await.unwrap(), 2);
        let report = verify_chain(&ztai_store::Sqlite::open(&path).unwrap()).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[tokio::test]
    async fn a_second_writer_on_the_same_log_is_refused_until_the_first_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let log = AuditLog::open(
            &ztai_store::Sqlite::open(&path).unwrap(),
            AuditLogConfig::default(),
        )
        .unwrap();
        let e = AuditLog::open(
            &ztai_store::Sqlite::open(&path).unwrap(),
            AuditLogConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("another process"), "{e}");
        drop(log);
        let again = AuditLog::open(
            &ztai_store::Sqlite::open(&path).unwrap(),
            AuditLogConfig::default(),
        )
        .unwrap();
        assert_eq!(again.append(record("r1")).await.unwrap(), 1);
    }
}
