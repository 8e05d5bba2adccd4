//! Distributed execution of the models on `tenure worker` processes, with
//! [datafusion-distributed]: the run plans each model as usual, the planner
//! cuts the physical plan into stages at its shuffles, and the stages' tasks
//! run on the workers, which stream Arrow batches to each other and back
//! over gRPC (Arrow Flight). Planning, the model kinds' fits, the checks and
//! every read and write of a Delta table stay in the run's process.
//!
//! This module owns the coordinator's side: which workers are alive, which
//! task goes to which (round robin over the live ones, counted for the run
//! report), and the distributed session over the run's tables. It does not
//! decide when a model is retried (the pipeline does) and knows nothing of
//! SQL models. [`worker`] is the worker process.
//!
//! [datafusion-distributed]: https://github.com/datafusion-contrib/datafusion-distributed

pub mod worker;

use datafusion::common::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{
    DistributedExt, RouteTasksEvent, RouteTasksEventResponse, RouteTasksHandler, SessionStateBuilderExt, WorkerResolver,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// How long a worker has to accept a connection before it counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One worker of a run: its URL, whether it still answers, the tasks sent to it.
#[derive(Debug)]
struct Member {
    url: Url,
    alive: AtomicBool,
    tasks: AtomicU64,
}

/// The workers of one run.
#[derive(Debug)]
pub struct Cluster {
    members: Vec<Member>,
    /// The next task's turn in the round robin.
    turn: AtomicUsize,
}

/// What the run report says of one worker (`engine.workers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerTasks {
    pub url: String,
    /// Tasks of model stages sent to it.
    pub tasks: u64,
    /// True when it stopped answering during the run (its models were retried).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

impl Cluster {
    pub fn new(urls: &[Url]) -> Arc<Cluster> {
        Arc::new(Cluster {
            members: urls
                .iter()
                .map(|url| Member {
                    url: url.clone(),
                    alive: AtomicBool::new(true),
                    tasks: AtomicU64::new(0),
                })
                .collect(),
            turn: AtomicUsize::new(0),
        })
    }

    /// The workers not lost so far.
    pub fn live(&self) -> Vec<Url> {
        self.members.iter().filter(|m| m.alive.load(Ordering::SeqCst)).map(|m| m.url.clone()).collect()
    }

    /// How many workers the run was given.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// How many workers were lost so far.
    pub fn lost(&self) -> usize {
        self.members.iter().filter(|m| !m.alive.load(Ordering::SeqCst)).count()
    }

    /// Probe every live worker (a TCP connection within [`PROBE_TIMEOUT`])
    /// and mark those that do not answer as lost, for the rest of the run.
    /// Returns how many were lost now.
    pub async fn probe(&self) -> usize {
        let probes = self.members.iter().filter(|m| m.alive.load(Ordering::SeqCst)).map(|m| async move {
            if !answers(&m.url).await {
                m.alive.store(false, Ordering::SeqCst);
                tracing::warn!(worker = %m.url, "worker does not answer; the run goes on without it");
                return 1;
            }
            0
        });
        futures::future::join_all(probes).await.into_iter().sum()
    }

    /// The run report's list: every worker, its tasks, whether it was lost.
    pub fn report(&self) -> Vec<WorkerTasks> {
        self.members
            .iter()
            .map(|m| WorkerTasks {
                url: m.url.to_string(),
                tasks: m.tasks.load(Ordering::SeqCst),
                lost: !m.alive.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// A session over the same tables and settings as `local` (a table
    /// registered in one is in the other) whose queries run their stages on
    /// the live workers.
    pub fn session(self: &Arc<Self>, local: &SessionContext) -> SessionContext {
        let state = local.state();
        let options = state.config().options().extensions.get::<crate::engine::ModelOptions>().cloned().unwrap_or_default();
        let state = SessionStateBuilder::new_from_existing(state)
            .with_distributed_worker_resolver(Live(self.clone()))
            .with_distributed_route_tasks_handler(Router(self.clone()))
            // `tenure_rebuild_from()` reads it where the planner did not fold it.
            .with_distributed_option_extension(options)
            .with_distributed_planner()
            .build();
        SessionContext::new_with_state(state)
    }

    /// URLs for the next `count` tasks, round robin over the live workers.
    fn route(&self, count: usize) -> Result<Vec<Url>, DataFusionError> {
        let live: Vec<&Member> = self.members.iter().filter(|m| m.alive.load(Ordering::SeqCst)).collect();
        if live.is_empty() {
            return Err(DataFusionError::Execution("no worker is left to run the model's tasks".into()));
        }
        let first = self.turn.fetch_add(count, Ordering::SeqCst);
        Ok((0..count)
            .map(|i| {
                let m = live[(first + i) % live.len()];
                m.tasks.fetch_add(1, Ordering::SeqCst);
                m.url.clone()
            })
            .collect())
    }
}

/// Whether a TCP connection to the worker's host and port opens in time.
async fn answers(url: &Url) -> bool {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// The planner's view of the cluster: the live workers.
struct Live(Arc<Cluster>);

impl WorkerResolver for Live {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.live())
    }
}

/// Sends each stage's tasks to the live workers in turn, and counts them.
struct Router(Arc<Cluster>);

impl RouteTasksHandler for Router {
    fn handle(&self, ev: RouteTasksEvent) -> Option<datafusion::common::Result<RouteTasksEventResponse>> {
        Some(self.0.route(ev.task_count).map(RouteTasksEventResponse::new))
    }
}

/// Parse the workers of `--workers` or `engine.workers`: `http://host:port`
/// URLs (a bare `host:port` means `http://host:port`).
pub fn parse_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let with_scheme = if text.contains("://") { text.to_string() } else { format!("http://{text}") };
    let url = Url::parse(&with_scheme).map_err(|e| format!("{text:?} is not a worker URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || url.port_or_known_default().is_none() {
        return Err(format!("{text:?} is not a worker URL: expected http://HOST:PORT"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_urls_need_a_host_and_a_port() {
        assert_eq!(parse_url("127.0.0.1:7001").expect("url").as_str(), "http://127.0.0.1:7001/");
        assert_eq!(parse_url(" http://w1:80 ").expect("url").as_str(), "http://w1/");
        assert!(parse_url("https://w1").is_ok(), "the scheme's port");
        assert!(parse_url("s3://bucket:1").is_err());
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn tasks_go_round_robin_to_the_live_workers_and_are_counted() {
        let urls: Vec<Url> = ["http://a:1", "http://b:2", "http://c:3"].iter().map(|u| Url::parse(u).expect("url")).collect();
        let cluster = Cluster::new(&urls);
        let first = cluster.route(4).expect("route");
        assert_eq!(first.iter().map(|u| u.host_str().unwrap_or("")).collect::<Vec<_>>(), ["a", "b", "c", "a"]);
        cluster.members[1].alive.store(false, Ordering::SeqCst);
        let second = cluster.route(2).expect("route");
        assert!(second.iter().all(|u| u.host_str() != Some("b")), "{second:?}");
        let report = cluster.report();
        assert_eq!(report.iter().map(|w| w.tasks).sum::<u64>(), 6);
        assert_eq!(report[1], WorkerTasks { url: "http://b:2/".into(), tasks: 1, lost: true });
        for m in &cluster.members {
            m.alive.store(false, Ordering::SeqCst);
        }
        assert!(cluster.route(1).is_err());
    }

    #[tokio::test]
    async fn a_worker_that_does_not_accept_connections_is_lost() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let open = Url::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("url");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            Url::parse(&format!("http://{}", l.local_addr().expect("addr"))).expect("url")
        };
        let cluster = Cluster::new(&[open.clone(), closed]);
        assert_eq!(cluster.probe().await, 1);
        assert_eq!(cluster.live(), vec![open]);
        assert_eq!(cluster.probe().await, 0, "a lost worker stays lost and is not counted twice");
    }
}
