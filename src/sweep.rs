//! Cleanup: objects uploaded but never confirmed, and deletes that stopped halfway.
//!
//! Every Ferry key carries its own expiry (see [`crate::upload::ticket`]), so an object whose
//! key expired more than the confirm grace ago, and that has no row, can never be confirmed:
//! it is an orphan. Objects whose keys are not Ferry keys are never touched. Several instances
//! sweeping at once do no harm: every step is idempotent.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::db::DbError;
use crate::storage::StoreError;
use crate::upload::{TicketSigner, now_unix};

const BATCH: u32 = 500;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects listed in the bucket.
    pub scanned: u64,
    /// Orphaned objects deleted (or, in a dry run, that would be).
    pub orphans: Vec<String>,
    /// Half-done deletes finished (or that would be).
    pub finished_deletes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One full pass. With `dry_run`, reports what it would do and changes nothing.
pub async fn sweep_once(state: &AppState, dry_run: bool) -> Result<SweepReport, SweepError> {
    let mut report = SweepReport::default();
    finish_deletes(state, dry_run, &mut report).await?;
    remove_orphans(state, dry_run, &mut report).await?;
    if !dry_run {
        // Webhook bookkeeping older than any confirm window is of no further use.
        let keep = state.settings.confirm_grace + state.settings.sweep_margin;
        state.db.prune(now_unix().saturating_sub(keep.as_secs()) as i64).await?;
    }
    Ok(report)
}

async fn finish_deletes(state: &AppState, dry_run: bool, report: &mut SweepReport) -> Result<(), SweepError> {
    let age = chrono::Duration::from_std(state.settings.sweep_delete_age).unwrap_or(chrono::Duration::MAX);
    let before = chrono::Utc::now() - age;
    let mut seen_last = 0;
    loop {
        let rows = state.db.stuck_deletions(before, BATCH).await?;
        let rows: Vec<_> = rows.into_iter().filter(|r| r.id > seen_last).collect();
        let Some(last) = rows.last() else {
            return Ok(());
        };
        seen_last = last.id;
        for row in rows {
            if !dry_run {
                state.store.delete(&row.object_key).await?;
                state.db.purge(row.id).await?;
            }
            report.finished_deletes.push(row.object_key);
        }
        if dry_run {
            return Ok(());
        }
    }
}

async fn remove_orphans(state: &AppState, dry_run: bool, report: &mut SweepReport) -> Result<(), SweepError> {
    // The extra margin lets a confirm that was in flight at its deadline win the race.
    let wait = state.settings.confirm_grace + state.settings.sweep_margin;
    let cutoff = now_unix().saturating_sub(wait.as_secs());
    let mut continuation: Option<String> = None;
    loop {
        let page = state.store.list(continuation.as_deref()).await?;
        report.scanned += page.objects.len() as u64;
        let expired: Vec<String> = page
            .objects
            .into_iter()
            .filter(|o| TicketSigner::parse(&o.key).is_ok_and(|(_, t)| u64::from(t.expires_at) < cutoff))
            .map(|o| o.key)
            .collect();
        if !expired.is_empty() {
            let known = state.db.known_keys(&expired).await?;
            for key in expired.into_iter().filter(|k| !known.contains(k)) {
                if !dry_run {
                    state.store.delete(&key).await?;
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

/// Sweeps every `interval` until `stop` is cancelled.
pub async fn run_periodically(state: AppState, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match sweep_once(&state, false).await {
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
                tracing::warn!(error = %crate::api::error_chain(&e), "sweep failed; will retry")
            }
        }
    }
}
