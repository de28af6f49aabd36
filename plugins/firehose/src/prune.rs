//! The retention job: deletes events older than the retention window.

use std::sync::Arc;
use std::time::Duration;

use aurora_core::store::Sequencer;
use chrono::Utc;

/// Prunes the log now and then every `interval`, for as long as it runs.
/// Several server nodes pruning one database do no harm: each deletes
/// what is still there.
pub(crate) async fn run(sequencer: Arc<dyn Sequencer>, retention: Duration, interval: Duration) {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        tracing::warn!("firehose retention too long to represent; events are never pruned");
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(before) = Utc::now().checked_sub_signed(retention) else {
            continue;
        };
        match sequencer.prune(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, %before, "pruned the event log"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the event log"),
        }
    }
}
