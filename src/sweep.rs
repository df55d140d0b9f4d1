//! Cleanup: objects uploaded but never confirmed, and deletes that stopped halfway.
//!
//! Every Ferry key carries its own expiry (see [`crate::upload::ticket`]), so an object whose
//! key expired more than the confirm grace ago, and that has no row, can never be confirmed:
//! it is an orphan. Objects whose keys are not Ferry keys are never touched. Several instances
//! sweeping at once would do no harm (every step is idempotent), but only the holder of the
//! `sweep` lease in the database runs the periodic pass, so N instances do not list the bucket
//! N times.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{SweepConfig, UploadConfig};
use crate::db::{DbError, Maintenance};
use crate::storage::{ObjectStore, StoreError};
use crate::telemetry::error_chain;
use crate::upload::{TicketSigner, now_unix};

const BATCH: u32 = 500;
/// The lease that lets one instance at a time run the periodic sweep.
pub const SWEEP_LEASE: &str = "sweep";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects listed in the bucket.
    pub scanned: u64,
    /// Orphaned objects deleted (or, in a dry run, that would be).
    pub orphans: Vec<String>,
    /// Half-done deletes finished (or that would be).
    pub finished_deletes: Vec<String>,
    /// Multipart uploads abandoned in the embedded store and removed (none in a dry run).
    pub abandoned_multipart: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The cleanup job: one pass on demand (`ferry sweep`), or periodically inside `ferry serve`.
pub struct Sweeper {
    db: Arc<dyn Maintenance>,
    store: Arc<dyn ObjectStore>,
    /// How long after its URL expired an upload may still be confirmed.
    confirm_grace: Duration,
    /// How long an upload URL lives.
    upload_url_ttl: Duration,
    cfg: SweepConfig,
    /// This process, as a lease holder.
    holder: String,
}

impl Sweeper {
    pub fn new(
        db: Arc<dyn Maintenance>,
        store: Arc<dyn ObjectStore>,
        uploads: &UploadConfig,
        cfg: SweepConfig,
    ) -> Self {
        let holder = uuid::Uuid::new_v4().to_string();
        Self { db, store, confirm_grace: uploads.confirm_grace, upload_url_ttl: uploads.url_ttl, cfg, holder }
    }

    /// One full pass. With `dry_run`, reports what it would do and changes nothing.
    pub async fn sweep_once(&self, dry_run: bool) -> Result<SweepReport, SweepError> {
        let mut report = SweepReport::default();
        self.finish_deletes(dry_run, &mut report).await?;
        self.remove_orphans(dry_run, &mut report).await?;
        if !dry_run {
            report.abandoned_multipart = self.store.remove_abandoned_multipart(self.cfg.multipart_age).await?;
            // Webhook bookkeeping older than any confirm window is of no further use.
            let keep = self.confirm_grace + self.cfg.margin;
            self.db.prune(now_unix().saturating_sub(keep.as_secs()) as i64).await?;
            // A deleted key must outlive every confirm window it could still be confirmed in:
            // the key was issued before it was deleted, so its window ends at most an upload
            // URL's life plus the grace after the delete.
            let window = self.upload_url_ttl + keep;
            let age = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
            self.db.prune_deleted_keys(chrono::Utc::now() - age).await?;
        }
        Ok(report)
    }

    async fn finish_deletes(&self, dry_run: bool, report: &mut SweepReport) -> Result<(), SweepError> {
        let (db, store) = (&self.db, &self.store);
        let age = chrono::Duration::from_std(self.cfg.delete_age).unwrap_or(chrono::Duration::MAX);
        let before = chrono::Utc::now() - age;
        let mut seen_last = 0;
        loop {
            let rows = db.stuck_deletions(before, BATCH).await?;
            let rows: Vec<_> = rows.into_iter().filter(|r| r.id > seen_last).collect();
            let Some(last) = rows.last() else {
                return Ok(());
            };
            seen_last = last.id;
            for row in rows {
                if !dry_run {
                    store.delete(&row.object_key).await?;
                    db.purge(row.id).await?;
                }
                report.finished_deletes.push(row.object_key);
            }
            if dry_run {
                return Ok(());
            }
        }
    }

    async fn remove_orphans(&self, dry_run: bool, report: &mut SweepReport) -> Result<(), SweepError> {
        let (db, store) = (&self.db, &self.store);
        // The extra margin lets a confirm that was in flight at its deadline win the race.
        let wait = self.confirm_grace + self.cfg.margin;
        let cutoff = now_unix().saturating_sub(wait.as_secs());
        let mut continuation: Option<String> = None;
        loop {
            let page = store.list(continuation.as_deref()).await?;
            report.scanned += page.objects.len() as u64;
            let expired: Vec<String> = page
                .objects
                .into_iter()
                .filter(|o| TicketSigner::parse(&o.key).is_ok_and(|(_, t)| u64::from(t.expires_at) < cutoff))
                .map(|o| o.key)
                .collect();
            if !expired.is_empty() {
                let known = db.known_keys(&expired).await?;
                for key in expired.into_iter().filter(|k| !known.contains(k)) {
                    if !dry_run {
                        store.delete(&key).await?;
                    }
                    report.orphans.push(key);
                }
            }
            match page.next {
                Some(next) => continuation = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Sweeps every `interval` (from the configuration) until `stop` is cancelled; does
    /// nothing when the interval is zero.
    pub async fn run_periodically(self: Arc<Self>, stop: CancellationToken) {
        let interval = self.cfg.interval;
        if interval.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            // One instance at a time: the others find the lease taken and wait for the next turn.
            let now = now_unix() as i64;
            let lease = i64::try_from(interval.as_secs().saturating_mul(2)).unwrap_or(i64::MAX).max(60);
            match self.db.try_lease(SWEEP_LEASE, &self.holder, now, now.saturating_add(lease)).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!("sweep: another instance holds the lease");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "sweep: cannot take the lease; will retry");
                    continue;
                }
            }
            match self.sweep_once(false).await {
                Ok(r) if r.orphans.is_empty() && r.finished_deletes.is_empty() => {
                    tracing::debug!(scanned = r.scanned, "sweep: nothing to clean");
                }
                Ok(r) => tracing::info!(
                    scanned = r.scanned,
                    orphans = r.orphans.len(),
                    finished_deletes = r.finished_deletes.len(),
                    "sweep cleaned up"
                ),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "sweep failed; will retry")
                }
            }
        }
    }
}
