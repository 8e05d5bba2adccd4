//! Where a run's models execute: in the run's process, or on the workers of
//! `engine.workers` (`--workers`). A model whose attempt on the workers fails
//! because the connection to a worker failed is built again (at most once
//! per worker), on the workers that still answer or, once none does, in the
//! run's process; any other failure is the model's.

use crate::catalog::Model;
use crate::cluster::Cluster;
use crate::engine;
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use std::sync::{Arc, Mutex};

/// How many times, and how far apart, the workers are probed after a
/// failed connection before the model is tried again.
const PROBES: usize = 10;
const PROBE_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Clone)]
pub(super) struct Executor {
    local: SessionContext,
    workers: Option<Workers>,
}

#[derive(Clone)]
struct Workers {
    cluster: Arc<Cluster>,
    /// A session over the run's tables whose plans run on the workers.
    session: SessionContext,
    retried: Arc<Mutex<Vec<String>>>,
}

impl Executor {
    /// Models run in `local`, or on `cluster`'s workers (those that answer
    /// now) over the same tables.
    pub(super) async fn new(local: &SessionContext, cluster: Option<Arc<Cluster>>) -> Executor {
        let workers = match cluster {
            Some(cluster) => {
                cluster.probe().await;
                Some(Workers {
                    session: cluster.session(local),
                    cluster,
                    retried: Arc::default(),
                })
            }
            None => None,
        };
        Executor {
            local: local.clone(),
            workers,
        }
    }

    /// The run's own session (checks, kept rows, the fits' settings).
    pub(super) fn local(&self) -> &SessionContext {
        &self.local
    }

    /// Build one model, in a session where `tenure_rebuild_from()` is
    /// `from` when given.
    pub(super) async fn build(&self, model: &Model, from: Option<NaiveDate>) -> datafusion::error::Result<Option<engine::Built>> {
        let session = |base: &SessionContext| match from {
            Some(from) => engine::rebuilding_from(base, from),
            None => Ok(base.clone()),
        };
        let Some(workers) = &self.workers else {
            return engine::build(&session(&self.local)?, model).await;
        };
        // A model is tried again at most once per worker: each retry follows
        // a failure of the transport to a worker.
        let mut retries = workers.cluster.size();
        loop {
            let lost_before = workers.cluster.lost();
            let on_workers = !workers.cluster.live().is_empty();
            let ctx = session(if on_workers { &workers.session } else { &self.local })?;
            match engine::build(&ctx, model).await {
                Err(e) if on_workers && retries > 0 && is_transport_failure(&e) => {
                    retries -= 1;
                    // A worker being killed may still accept connections for
                    // a moment (while it dumps core): look a few times.
                    for _ in 0..PROBES {
                        if workers.cluster.probe().await > 0 || workers.cluster.lost() > lost_before {
                            break;
                        }
                        tokio::time::sleep(PROBE_PAUSE).await;
                    }
                    let left = workers.cluster.live().len();
                    tracing::warn!(model = %model.name, workers_left = left, error = %e, "the connection to a worker failed while the model ran; building it again");
                    workers.retried.lock().unwrap_or_else(|e| e.into_inner()).push(model.name.clone());
                }
                outcome => return outcome,
            }
        }
    }

    /// The run report's `engine`, when the models ran on workers.
    pub(super) fn report(&self) -> Option<super::report::EngineReport> {
        let workers = self.workers.as_ref()?;
        Some(super::report::EngineReport {
            workers: workers.cluster.report(),
            retried_models: workers.retried.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }
}

/// What tonic writes for a failed connection, as it reaches the run when
/// a worker's task failed to reach another worker: datafusion-distributed
/// sends a worker's error back as text, so its type is lost on the way.
const TRANSPORT_FAILURES: [&str; 5] = [
    "The service is currently unavailable",
    "transport error",
    "tcp connect error",
    "connection reset",
    "broken pipe",
];

/// Whether a model's error is a failure of the connection to a worker (a
/// gRPC status or transport error anywhere in its causes, or the text of
/// one that a worker sent back) rather than of the model itself: errors of
/// a worker's execution come back as DataFusion's.
fn is_transport_failure(e: &datafusion::error::DataFusionError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err.is::<tonic::Status>() || err.is::<tonic::transport::Error>() {
            return true;
        }
        let text = err.to_string();
        if TRANSPORT_FAILURES.iter().any(|t| text.contains(t)) {
            return true;
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::error::DataFusionError;

    #[test]
    fn only_a_failed_connection_is_a_reason_to_build_again() {
        let status = tonic::Status::unknown("transport error");
        assert!(is_transport_failure(&DataFusionError::External(Box::new(status))));
        let wrapped = DataFusionError::Context("model".into(), Box::new(DataFusionError::External(Box::new(tonic::Status::unavailable("gone")))));
        assert!(is_transport_failure(&wrapped));
        // A worker that could not reach another sends the status back as text.
        let relayed = "code: 'The service is currently unavailable', message: \"tcp connect error\", source: tonic::transport::Error(Transport, ConnectError(\"tcp connect error\", 127.0.0.1:41713, Os { code: 111, kind: ConnectionRefused }))";
        assert!(is_transport_failure(&DataFusionError::External(relayed.into())));
        assert!(!is_transport_failure(&DataFusionError::Plan("no such column".into())));
        assert!(!is_transport_failure(&DataFusionError::ResourcesExhausted("memory".into())));
    }
}
