//! `tenure worker`: a process that runs the stages of model plans sent by
//! runs with `--workers` (`engine.workers`), and streams their batches back.
//! It executes, never plans: its session has tenure's SQL functions and
//! settings, its object stores are built from the project's storage
//! settings (the same credentials as the run's), and its memory pool is
//! `engine.memory_mb`. It holds no state between tasks beyond a short cache
//! of the plans it was sent, so a lost worker loses only its running tasks.

use crate::storage::Storage;
use async_trait::async_trait;
use datafusion::common::DataFusionError;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion_distributed::{DistributedExt, Worker, WorkerQueryContext, WorkerSessionBuilder};
use object_store::ObjectStore;
use std::net::SocketAddr;
use std::sync::Arc;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("worker stopped: {0}")]
    Serve(#[source] tonic::transport::Error),
    #[error("worker runtime: {0}")]
    Runtime(#[source] DataFusionError),
}

/// A worker bound to its address, not yet serving.
pub struct BoundWorker {
    listener: tokio::net::TcpListener,
    worker: Worker,
}

impl BoundWorker {
    /// Bind `listen` (port 0: any free port) with the project's storage
    /// settings and memory limit.
    pub async fn bind(listen: &str, storage: Storage, memory: Option<usize>) -> Result<BoundWorker, WorkerError> {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|source| WorkerError::Listen {
            addr: listen.to_string(),
            source,
        })?;
        let mut runtime = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(Stores::new(storage)));
        if let Some(bytes) = memory {
            runtime = runtime.with_memory_pool(Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(bytes)));
        }
        let runtime = runtime.build_arc().map_err(WorkerError::Runtime)?;
        let worker = Worker::from_session_builder(Sessions).with_runtime_env(runtime);
        Ok(BoundWorker { listener, worker })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serve until `shutdown` completes (running tasks are cut off).
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send) -> Result<(), WorkerError> {
        let incoming = tonic::transport::server::TcpIncoming::from(self.listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(self.worker.into_worker_server())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(WorkerError::Serve)
    }
}

/// The session each task runs in: tenure's functions and settings.
struct Sessions;

#[async_trait]
impl WorkerSessionBuilder for Sessions {
    async fn build_session_state(&self, ctx: WorkerQueryContext) -> Result<SessionState, DataFusionError> {
        // A worker that dies as its first stage arrives, for the tests.
        crate::failpoint("worker:task");
        let mut state = ctx
            .builder
            .with_distributed_option_extension_from_headers::<crate::engine::ModelOptions>(&ctx.headers)?
            .build();
        for udf in crate::engine::udf::all() {
            state.register_udf(Arc::new(udf))?;
        }
        Ok(state)
    }
}

/// Object stores by URL: those registered, else one built from the
/// project's storage settings for the URL's bucket (or the local disk).
struct Stores {
    registered: DefaultObjectStoreRegistry,
    storage: Storage,
}

impl Stores {
    fn new(storage: Storage) -> Stores {
        Stores {
            registered: DefaultObjectStoreRegistry::new(),
            storage,
        }
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("registered", &self.registered).finish_non_exhaustive()
    }
}

impl ObjectStoreRegistry for Stores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.registered.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        self.registered.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.registered.get_store(url) {
            return Ok(store);
        }
        if url.scheme() == "memory" {
            return Err(DataFusionError::Configuration(
                "a worker cannot read a memory:// warehouse; distributed runs need a warehouse on a shared disk or object store".into(),
            ));
        }
        let location = self
            .storage
            .location(url.as_str())
            .map_err(|e| DataFusionError::Configuration(e.to_string()))?;
        Ok(location.store)
    }
}
