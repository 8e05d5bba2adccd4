//! The per-pipeline lease that keeps two runs of one pipeline from ever
//! overlapping, across processes and machines: one JSON object per pipeline at
//! `<pipeline>.json` in [`Warehouse::leases`], written only with object
//! store conditional puts.
//!
//! Protocol:
//! - **take a free lease**: absent -> `PutMode::Create`; present but released
//!   or expired (`expires_at` plus [`CLOCK_SKEW`] in the past) ->
//!   `PutMode::Update` from the version just read. Losing either race is a
//!   precondition failure: someone else has it.
//! - **renew** while running (every third of the lease time) and **release**
//!   when done: `PutMode::Update` from the holder's own last version. A holder
//!   that cannot confirm a renewal before `expires_at - CLOCK_SKEW` must stop
//!   its run: from then on someone else may take the lease.
//! - **every write carries a fresh token**. A put that fails for any reason
//!   (a connection error, or a precondition failure on a retried request whose
//!   first try landed) is settled by reading the lease back: the write took
//!   effect if and only if the stored token is ours. Nothing is assumed.
//! - **the lease is a fence**: it records the newest slot (fire time) handled
//!   under it and carries it over on every takeover, so a scheduler that gets
//!   the lease after another one ran the same slot sees that and skips it.
//!
//! The lease object is never deleted. Stores without conditional update:
//! object_store's `LocalFileSystem` (0.13) supports `PutMode::Create` (a hard
//! link) but answers `PutMode::Update` with `NotImplemented`. For a warehouse
//! on the local filesystem the update is done as a compare-and-swap under an
//! exclusive OS file lock on `<pipeline>.json.lock` beside the lease: lock,
//! compare the stored e-tag with the expected one, overwrite (an atomic
//! rename), unlock. Every tenure process on the machine takes the same lock
//! (the OS releases it if a process dies), so the swap is atomic among them;
//! across machines this needs a shared filesystem with working locks (NFSv4).
//! Any other store without conditional update is an error.
//!
//! Keeping a lease: [`keep_alive`] renews it every third of its time while
//! a run goes on and says when it was lost; [`hold`] runs one piece of work
//! under a lease taken now (`tenure run`, `backfill`, `demo`); the scheduler
//! waits for the lease and keeps it the same way.
//!
//! This module owns the lease object and its renewal; it does not know what
//! a run is.

use crate::clock::Clock;
use crate::warehouse::Warehouse;
use tokio::sync::watch;
use chrono::{DateTime, Utc};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Clocks of two schedulers may differ by this much: a lease is taken over
/// only this long after it expired, and its holder gives up this long before.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{lease}: cannot {action} the lease: {source}")]
    Store {
        lease: String,
        action: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error("{lease}: the stored lease is not valid JSON ({reason}); delete the file if no scheduler is running")]
    Corrupt { lease: String, reason: String },
    #[error("{lease}: the store supports no conditional update (needed for the lease); for S3 leave `aws_conditional_put` at its default `etag`")]
    Unsupported { lease: String },
    #[error("{lease}: cannot lock {lock}: {reason}")]
    LocalLock { lease: String, lock: String, reason: String },
    #[error("{lease}: the lease was lost to {holder}")]
    Lost { lease: String, holder: String },
}

/// The stored lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub pipeline: String,
    /// Who holds (or last held) the lease: `host-pid-random`.
    pub holder: String,
    /// Unique per write: identifies this exact write when a put's outcome
    /// has to be read back.
    pub token: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The holder let go; the lease is free at once.
    pub released: bool,
    /// The newest fire time handled under this lease, by any holder.
    pub last_fire: Option<DateTime<Utc>>,
    /// How that slot ended: `succeeded`, `failed`.
    pub last_status: Option<String>,
}

impl LeaseRecord {
    /// Free to take at `now`: released, or expired with room for clock skew.
    pub fn is_free(&self, now: DateTime<Utc>) -> bool {
        self.released || now >= self.expires_at + skew()
    }
}

fn skew() -> chrono::Duration {
    chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_else(|_| chrono::Duration::seconds(5))
}

/// What to do about the lease as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No lease object yet: create it.
    Create,
    /// Free, or already ours: update it from the version read.
    Take,
    /// Someone else holds it until `expires_at`.
    Busy { holder: String, expires_at: DateTime<Utc> },
}

/// The lease state machine: what `me` may do at `now` given the stored lease.
pub fn decide(current: Option<&LeaseRecord>, me: &str, now: DateTime<Utc>) -> Decision {
    match current {
        None => Decision::Create,
        Some(r) if r.is_free(now) || r.holder == me => Decision::Take,
        Some(r) => Decision::Busy {
            holder: r.holder.clone(),
            expires_at: r.expires_at,
        },
    }
}

/// The moment a holder must stop if it could not renew: before anyone else
/// may consider the lease expired.
pub fn holder_deadline(record: &LeaseRecord) -> DateTime<Utc> {
    record.expires_at - skew()
}

/// A lease we hold: the record we wrote and the version to update it from.
#[derive(Debug, Clone)]
pub struct Lease {
    pub record: LeaseRecord,
    version: UpdateVersion,
}

/// The result of one attempt to take the lease.
#[derive(Debug)]
pub enum Acquire {
    Held(Lease),
    Busy { holder: String, expires_at: DateTime<Utc> },
}

/// The result of a renewal.
#[derive(Debug)]
pub enum Renew {
    Renewed,
    /// Someone else has the lease now (or it was deleted).
    Lost { holder: String },
    /// The renewal did not take effect (or its outcome could not be read
    /// back) and the lease may still be ours; try again before the deadline.
    Failed(String),
}

/// The lease of one pipeline, as one holder sees it.
#[derive(Clone)]
pub struct LeaseStore {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    /// The lock file for the local compare-and-swap, when the warehouse is on
    /// the local filesystem.
    local_lock: Option<PathBuf>,
    display: String,
    pipeline: String,
    holder: String,
    ttl: Duration,
}

enum WriteMode {
    Create,
    Update(UpdateVersion),
}

#[derive(Debug)]
struct Read {
    record: LeaseRecord,
    version: UpdateVersion,
}

impl LeaseStore {
    /// The lease of `pipeline` in `warehouse`, held as `holder` for `ttl` at a time.
    pub fn new(warehouse: &Warehouse, pipeline: &str, holder: &str, ttl: Duration) -> Self {
        let leases = warehouse.leases();
        let file = format!("{pipeline}.json");
        LeaseStore {
            store: leases.store.clone(),
            path: leases.path(&file),
            local_lock: leases.local_path(&format!("{file}.lock")),
            display: leases.join(&file).display(),
            pipeline: pipeline.to_string(),
            holder: holder.to_string(),
            ttl,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Where the lease lives (for messages).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The stored lease, if any.
    pub async fn current(&self) -> Result<Option<LeaseRecord>, LeaseError> {
        Ok(self.read().await?.map(|r| r.record))
    }

    /// Try once to take the lease at `now`.
    pub async fn try_acquire(&self, now: DateTime<Utc>) -> Result<Acquire, LeaseError> {
        let mut current = self.read().await?;
        if let Some(c) = current.as_mut() {
            if !c.record.is_free(now) && c.record.holder != self.holder && holder_is_dead_here(&c.record.holder) {
                tracing::warn!(lease = %self.display, holder = %c.record.holder, "the lease holder's process is gone from this host; taking the lease over");
                c.record.released = true;
            }
        }
        let decision = decide(current.as_ref().map(|c| &c.record), &self.holder, now);
        let (mode, last_fire, last_status) = match (decision, current) {
            (Decision::Busy { holder, expires_at }, _) => return Ok(Acquire::Busy { holder, expires_at }),
            (Decision::Create, _) | (Decision::Take, None) => (WriteMode::Create, None, None),
            (Decision::Take, Some(c)) => (WriteMode::Update(c.version), c.record.last_fire, c.record.last_status),
        };
        let record = LeaseRecord {
            pipeline: self.pipeline.clone(),
            holder: self.holder.clone(),
            token: new_token(),
            acquired_at: now,
            expires_at: now + ttl(self.ttl),
            released: false,
            last_fire,
            last_status,
        };
        match self.commit(&record, mode).await? {
            Ok(version) => Ok(Acquire::Held(Lease { record, version })),
            Err(other) => Ok(Acquire::Busy {
                holder: other.as_ref().map(|o| o.record.holder.clone()).unwrap_or_default(),
                expires_at: other.map(|o| o.record.expires_at).unwrap_or(now),
            }),
        }
    }

    /// Extend a held lease to `now + ttl`.
    pub async fn renew(&self, lease: &mut Lease, now: DateTime<Utc>) -> Renew {
        let record = LeaseRecord {
            token: new_token(),
            expires_at: now + ttl(self.ttl),
            ..lease.record.clone()
        };
        match self.commit(&record, WriteMode::Update(lease.version.clone())).await {
            Ok(Ok(version)) => {
                lease.record = record;
                lease.version = version;
                Renew::Renewed
            }
            Ok(Err(Some(stored))) if stored.record.token == lease.record.token => {
                // Still our last write, under a version we did not know:
                // renew from that one next time.
                lease.version = stored.version;
                Renew::Failed("the lease changed version under us; retrying".into())
            }
            Ok(Err(Some(stored))) => Renew::Lost {
                holder: stored.record.holder,
            },
            Ok(Err(None)) => Renew::Lost { holder: String::new() },
            Err(e) => Renew::Failed(e.to_string()),
        }
    }

    /// Let go of a held lease, recording the slot handled under it (or
    /// keeping the previous one when `fire` is `None`).
    pub async fn release(
        &self,
        lease: Lease,
        now: DateTime<Utc>,
        fire: Option<DateTime<Utc>>,
        status: Option<&str>,
    ) -> Result<(), LeaseError> {
        let mut record = LeaseRecord {
            token: new_token(),
            expires_at: now,
            released: true,
            ..lease.record.clone()
        };
        if let Some(fire) = fire {
            record.last_fire = Some(record.last_fire.map_or(fire, |f| f.max(fire)));
            record.last_status = status.map(str::to_string);
        }
        match self.commit(&record, WriteMode::Update(lease.version)).await? {
            Ok(_) => Ok(()),
            Err(other) => Err(LeaseError::Lost {
                lease: self.display.clone(),
                holder: other.map(|o| o.record.holder).unwrap_or_default(),
            }),
        }
    }

    async fn read(&self) -> Result<Option<Read>, LeaseError> {
        let got = match self.store.get(&self.path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(self.store_err("read", source)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(|source| self.store_err("read", source))?;
        let record: LeaseRecord = serde_json::from_slice(&bytes).map_err(|e| LeaseError::Corrupt {
            lease: self.display.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some(Read { record, version }))
    }

    /// Read back after a write whose outcome is not known, retrying reads
    /// that fail: `Ok(version)` if our token is stored, else what is stored.
    async fn settle(&self, token: &str) -> Result<Result<UpdateVersion, Option<Read>>, LeaseError> {
        let mut last_err = None;
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await;
            }
            match self.read().await {
                Ok(Some(r)) if r.record.token == token => return Ok(Ok(r.version)),
                Ok(Some(r)) => return Ok(Err(Some(r))),
                Ok(None) => return Ok(Err(None)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| LeaseError::Lost {
            lease: self.display.clone(),
            holder: String::new(),
        }))
    }

    /// Write `record` conditionally. `Ok(Ok(version))`: it is stored;
    /// `Ok(Err(current))`: it is not, and this is what is stored instead.
    async fn commit(
        &self,
        record: &LeaseRecord,
        mode: WriteMode,
    ) -> Result<Result<UpdateVersion, Option<Read>>, LeaseError> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| LeaseError::Corrupt {
            lease: self.display.clone(),
            reason: e.to_string(),
        })?;
        let payload = PutPayload::from(body);
        let put = match mode {
            WriteMode::Create => {
                self.store
                    .put_opts(&self.path, payload, PutOptions::from(PutMode::Create))
                    .await
            }
            WriteMode::Update(v) => {
                match self
                    .store
                    .put_opts(&self.path, payload.clone(), PutOptions::from(PutMode::Update(v.clone())))
                    .await
                {
                    Err(object_store::Error::NotImplemented { .. }) => match &self.local_lock {
                        Some(lock) => self.local_update(lock, v, payload).await?,
                        None => {
                            return Err(LeaseError::Unsupported {
                                lease: self.display.clone(),
                            })
                        }
                    },
                    other => other,
                }
            }
        };
        match put {
            Ok(result) if result.e_tag.is_some() => Ok(Ok(UpdateVersion::from(result))),
            Ok(_) => self.settle(&record.token).await,
            Err(object_store::Error::NotImplemented { .. }) => Err(LeaseError::Unsupported {
                lease: self.display.clone(),
            }),
            Err(e) => {
                tracing::debug!(lease = %self.display, error = %e, "lease write not confirmed; reading it back");
                match self.settle(&record.token).await? {
                    // Nothing stored at all: the write failed for a reason
                    // of its own (missing bucket, denied access); say which.
                    Err(None) => Err(LeaseError::Store {
                        lease: self.display.clone(),
                        action: "write",
                        source: e,
                    }),
                    settled => Ok(settled),
                }
            }
        }
    }

    /// `PutMode::Update` on the local filesystem: compare and swap under an
    /// exclusive lock of the lock file (see the module docs).
    async fn local_update(
        &self,
        lock: &std::path::Path,
        expected: UpdateVersion,
        payload: PutPayload,
    ) -> Result<object_store::Result<object_store::PutResult>, LeaseError> {
        let lock_err = |reason: String| LeaseError::LocalLock {
            lease: self.display.clone(),
            lock: lock.display().to_string(),
            reason,
        };
        if let Some(dir) = lock.parent() {
            std::fs::create_dir_all(dir).map_err(|e| lock_err(e.to_string()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock)
            .map_err(|e| lock_err(e.to_string()))?;
        let started = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(lock_err("still locked by another process after 10 s".into())),
                Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e.to_string())),
            }
        }
        // The lock is held until `file` is dropped at the end of this function.
        let precondition = |source: String| object_store::Error::Precondition {
            path: self.path.to_string(),
            source: source.into(),
        };
        let result = match self.store.head(&self.path).await {
            Err(object_store::Error::NotFound { .. }) => Err(precondition("the lease does not exist".into())),
            Err(e) => Err(e),
            Ok(meta) if meta.e_tag != expected.e_tag => Err(precondition(format!(
                "e-tag {:?} does not match {:?}",
                meta.e_tag, expected.e_tag
            ))),
            Ok(_) => {
                self.store
                    .put_opts(&self.path, payload, PutOptions::from(PutMode::Overwrite))
                    .await
            }
        };
        drop(file);
        Ok(result)
    }

    fn store_err(&self, action: &'static str, source: object_store::Error) -> LeaseError {
        LeaseError::Store {
            lease: self.display.clone(),
            action,
            source,
        }
    }
}

fn ttl(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::seconds(60))
}

fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn this_host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Renew `held` every third of its time until told it is done; returns it
/// for release, or `None` if it was lost (after saying so on `lost`).
pub async fn keep_alive(
    store: LeaseStore,
    mut held: Lease,
    clock: Arc<dyn Clock>,
    mut done: watch::Receiver<bool>,
    lost: watch::Sender<bool>,
) -> Option<Lease> {
    let every = store.ttl() / 3;
    let mut wait = every;
    loop {
        tokio::select! {
            _ = done.wait_for(|done| *done) => return Some(held),
            _ = tokio::time::sleep(wait) => {}
        }
        let now = clock.now();
        let left = (holder_deadline(&held.record) - now).to_std().unwrap_or(Duration::ZERO);
        let renewed = match tokio::time::timeout(left, store.renew(&mut held, now)).await {
            Ok(r) => r,
            Err(_) => Renew::Failed("no answer before the lease deadline".into()),
        };
        match renewed {
            Renew::Renewed => wait = every,
            Renew::Lost { holder } => {
                tracing::warn!(lease = %store.display(), holder = %holder, "lease lost to another scheduler; stopping the run");
                let _ = lost.send(true);
                return None;
            }
            Renew::Failed(reason) => {
                if clock.now() >= holder_deadline(&held.record) {
                    tracing::warn!(lease = %store.display(), reason = %reason, "lease not renewed before its deadline; stopping the run");
                    let _ = lost.send(true);
                    return Some(held);
                }
                tracing::warn!(lease = %store.display(), reason = %reason, "lease renewal failed; retrying");
                wait = every.min(Duration::from_secs(1));
            }
        }
    }
}

/// Why work run under a lease did not finish.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("pipeline {pipeline:?} is running elsewhere ({holder}, lease until {expires_at}); try again when it has finished")]
    Busy {
        pipeline: String,
        holder: String,
        expires_at: DateTime<Utc>,
    },
    #[error("pipeline {pipeline:?}: the run lease was lost; the run was stopped before it published anything more")]
    Lost { pipeline: String },
}

/// Take the lease of `store` now (failing if someone else holds it), run
/// `work` while [`keep_alive`] renews it, and release it. `work` is dropped
/// (stopped at its next await) if the lease is lost.
pub async fn hold<T>(store: &LeaseStore, clock: Arc<dyn Clock>, work: impl std::future::Future<Output = T>) -> Result<T, HoldError> {
    let held = match store.try_acquire(clock.now()).await? {
        Acquire::Held(lease) => lease,
        Acquire::Busy { holder, expires_at } => {
            return Err(HoldError::Busy {
                pipeline: store.pipeline.clone(),
                holder,
                expires_at,
            })
        }
    };
    keep_during(store, held, clock, work).await
}

/// [`hold`], waiting (polling every `poll`) while someone else holds the
/// lease instead of failing: for work that is short and must not overlap,
/// such as the ingest of every pipeline into one warehouse. A store error is
/// retried a few times before it is returned.
pub async fn hold_when_free<T>(
    store: &LeaseStore,
    clock: Arc<dyn Clock>,
    poll: Duration,
    work: impl std::future::Future<Output = T>,
) -> Result<T, HoldError> {
    let held = wait_for(store, clock.as_ref(), poll).await?;
    keep_during(store, held, clock, work).await
}

/// Wait until the lease of `store` is free and take it.
async fn wait_for(store: &LeaseStore, clock: &dyn Clock, poll: Duration) -> Result<Lease, HoldError> {
    let mut announced = false;
    let mut errors = 0u32;
    loop {
        match store.try_acquire(clock.now()).await {
            Ok(Acquire::Held(lease)) => return Ok(lease),
            Ok(Acquire::Busy { holder, expires_at }) => {
                if !announced {
                    tracing::info!(lease = %store.display(), holder = %holder, expires_at = %expires_at, "waiting for the lease");
                    announced = true;
                }
            }
            Err(e) if errors < 5 => {
                errors += 1;
                tracing::warn!(lease = %store.display(), error = %e, "cannot take the lease; retrying");
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(poll.mul_f64(0.5 + fastrand::f64())).await;
    }
}

/// A lease taken by [`acquire_when_free`], renewed until [`Held::release`]
/// or until dropped (then released by a task of its own): for work whose
/// end is not one future, such as a month close that must stay exclusive
/// until the run's report is written.
pub struct Held {
    releasing: Releasing,
    lost: watch::Receiver<bool>,
}

impl Held {
    /// Whether renewing failed past the deadline or someone else took it.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Stop renewing and release it.
    pub async fn release(mut self) {
        if let Some(keeper) = self.releasing.keeper.take() {
            let _ = self.releasing.done.send(true);
            release_when_kept(&self.releasing.store, self.releasing.clock.as_ref(), keeper).await;
        }
    }
}

/// Take the lease of `store`, waiting (polling every `poll`) while someone
/// else holds it, as [`hold_when_free`] does, and keep it until the
/// returned [`Held`] is released or dropped.
pub async fn acquire_when_free(store: &LeaseStore, clock: Arc<dyn Clock>, poll: Duration) -> Result<Held, HoldError> {
    let held = wait_for(store, clock.as_ref(), poll).await?;
    let (done_tx, done_rx) = watch::channel(false);
    let (lost_tx, lost_rx) = watch::channel(false);
    let keeper = tokio::spawn(keep_alive(store.clone(), held, clock.clone(), done_rx, lost_tx));
    Ok(Held {
        releasing: Releasing {
            store: store.clone(),
            clock,
            done: done_tx,
            keeper: Some(keeper),
        },
        lost: lost_rx,
    })
}

/// Run `work` under the lease `held` while [`keep_alive`] renews it, then
/// release it; `work` is dropped if the lease is lost. If this future is
/// dropped first (a run stopped by its timeout), the lease is released all
/// the same, by a task of its own.
async fn keep_during<T>(store: &LeaseStore, held: Lease, clock: Arc<dyn Clock>, work: impl std::future::Future<Output = T>) -> Result<T, HoldError> {
    let (done_tx, done_rx) = watch::channel(false);
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let keeper = tokio::spawn(keep_alive(store.clone(), held, clock.clone(), done_rx, lost_tx));
    let mut releasing = Releasing {
        store: store.clone(),
        clock,
        done: done_tx,
        keeper: Some(keeper),
    };
    let out = tokio::select! {
        out = work => Some(out),
        _ = lost_rx.wait_for(|lost| *lost) => None,
    };
    if let Some(keeper) = releasing.keeper.take() {
        let _ = releasing.done.send(true);
        release_when_kept(&releasing.store, releasing.clock.as_ref(), keeper).await;
    }
    out.ok_or_else(|| HoldError::Lost {
        pipeline: store.pipeline.clone(),
    })
}

/// A lease being kept: released when its work ends, or when dropped.
struct Releasing {
    store: LeaseStore,
    clock: Arc<dyn Clock>,
    done: watch::Sender<bool>,
    keeper: Option<tokio::task::JoinHandle<Option<Lease>>>,
}

impl Drop for Releasing {
    fn drop(&mut self) {
        let Some(keeper) = self.keeper.take() else { return };
        let _ = self.done.send(true);
        let (store, clock) = (self.store.clone(), self.clock.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release_when_kept(&store, clock.as_ref(), keeper).await });
        }
    }
}

/// Wait for the keeper to stop and release the lease it still holds.
async fn release_when_kept(store: &LeaseStore, clock: &dyn Clock, keeper: tokio::task::JoinHandle<Option<Lease>>) {
    match keeper.await {
        Ok(Some(held)) => {
            if let Err(e) = store.release(held, clock.now(), None, None).await {
                tracing::warn!(lease = %store.display(), error = %e, "lease not released; it expires by itself");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(lease = %store.display(), error = %e, "lease keeper failed; the lease will expire"),
    }
}

/// A holder id for this process: host, process id and a random suffix, so
/// that a restarted process never mistakes its predecessor's lease for its own.
pub fn holder_id() -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}-{}", this_host(), std::process::id(), &suffix[..8])
}

/// Whether `holder` names a process of this host that no longer exists (a
/// run killed with SIGKILL): its lease need not be waited out. Only Linux's
/// `/proc` is consulted; elsewhere nobody is presumed dead.
fn holder_is_dead_here(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, '-');
    let (Some(_suffix), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    host == this_host()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageSettings;
    use crate::storage::Storage;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("rfc3339").with_timezone(&Utc)
    }

    fn record(holder: &str, expires_at: &str, released: bool) -> LeaseRecord {
        LeaseRecord {
            pipeline: "daily".into(),
            holder: holder.into(),
            token: "t".into(),
            acquired_at: utc("2026-05-01T06:00:00Z"),
            expires_at: utc(expires_at),
            released,
            last_fire: None,
            last_status: None,
        }
    }

    #[test]
    fn state_machine() {
        let now = utc("2026-05-01T06:01:00Z");
        assert_eq!(decide(None, "a", now), Decision::Create);
        // Live lease of someone else: busy.
        let live = record("b", "2026-05-01T06:01:30Z", false);
        assert!(matches!(decide(Some(&live), "a", now), Decision::Busy { .. }));
        // Our own live lease (a write of ours that landed unseen): take it.
        assert_eq!(decide(Some(&live), "b", now), Decision::Take);
        // Released: free at once.
        assert_eq!(decide(Some(&record("b", "2026-05-01T07:00:00Z", true)), "a", now), Decision::Take);
        // Expired, but within the clock-skew allowance: still busy.
        let just_expired = record("b", "2026-05-01T06:00:57Z", false);
        assert!(matches!(decide(Some(&just_expired), "a", now), Decision::Busy { .. }));
        // Expired for longer than the allowance: take over.
        let expired = record("b", "2026-05-01T06:00:50Z", false);
        assert_eq!(decide(Some(&expired), "a", now), Decision::Take);
        // The holder's own deadline is before anyone may take over.
        assert!(holder_deadline(&live) < live.expires_at);
    }

    async fn stores(dir: &std::path::Path) -> Vec<(&'static str, Warehouse)> {
        let storage = Storage::new(StorageSettings::default());
        let local = Warehouse::open(&storage, &dir.display().to_string()).expect("local");
        let memory = Warehouse::open(&storage, &format!("memory:///lease-test-{}", uuid::Uuid::new_v4().simple())).expect("memory");
        vec![("local", local), ("memory", memory)]
    }

    #[tokio::test]
    async fn acquire_renew_release_and_takeover() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (kind, wh) in stores(dir.path()).await {
            let ttl = Duration::from_secs(60);
            let a = LeaseStore::new(&wh, "daily", "a", ttl);
            let b = LeaseStore::new(&wh, "daily", "b", ttl);
            let t0 = utc("2026-05-01T06:00:00Z");

            // a takes the free lease; b is turned away.
            let Acquire::Held(mut la) = a.try_acquire(t0).await.expect("a") else { panic!("{kind}: a should hold") };
            match b.try_acquire(t0).await.expect("b") {
                Acquire::Busy { holder, .. } => assert_eq!(holder, "a", "{kind}"),
                Acquire::Held(_) => panic!("{kind}: b must not get a held lease"),
            }

            // a renews; b is still turned away after the first expiry.
            let t1 = t0 + chrono::Duration::seconds(50);
            assert!(matches!(a.renew(&mut la, t1).await, Renew::Renewed), "{kind}");
            let t2 = t0 + chrono::Duration::seconds(90);
            assert!(matches!(b.try_acquire(t2).await.expect("b"), Acquire::Busy { .. }), "{kind}");

            // a releases with the slot it ran: b takes it at once and sees the fence.
            let fire = utc("2026-05-01T06:00:00Z");
            a.release(la, t2, Some(fire), Some("succeeded")).await.expect("release");
            let Acquire::Held(lb) = b.try_acquire(t2).await.expect("b") else { panic!("{kind}: b should hold") };
            assert_eq!(lb.record.last_fire, Some(fire), "{kind}");
            assert_eq!(lb.record.last_status.as_deref(), Some("succeeded"));

            // b "crashes" (never renews); a takes over once it has expired, and the fence survives.
            let t3 = t2 + chrono::Duration::seconds(61);
            assert!(matches!(a.try_acquire(t3).await.expect("a"), Acquire::Busy { .. }), "{kind}: within skew");
            let t4 = t2 + chrono::Duration::seconds(66);
            let Acquire::Held(la) = a.try_acquire(t4).await.expect("a") else { panic!("{kind}: takeover") };
            assert_eq!(la.record.last_fire, Some(fire));

            // b wakes up and tries to renew: it learns it lost the lease.
            let mut lb = lb;
            match b.renew(&mut lb, t4).await {
                Renew::Lost { holder } => assert_eq!(holder, "a", "{kind}"),
                other => panic!("{kind}: expected Lost, got {other:?}"),
            }
            // And b's release does not clobber a's lease.
            assert!(b.release(lb, t4, None, None).await.is_err());
            let stored = a.current().await.expect("read").expect("lease");
            assert_eq!(stored.holder, "a");
            assert!(!stored.released);
            a.release(la, t4, None, None).await.expect("release");
        }
    }

    #[tokio::test]
    async fn only_one_of_many_racing_takers_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (kind, wh) in stores(dir.path()).await {
            let t0 = utc("2026-05-01T06:00:00Z");
            // Round 1 races on Create; round 2 on Update of an expired lease.
            for (round, now) in [(1, t0), (2, t0 + chrono::Duration::hours(1))] {
                let takers: Vec<LeaseStore> = (0..8)
                    .map(|i| LeaseStore::new(&wh, "race", &format!("r{round}-{i}"), Duration::from_secs(60)))
                    .collect();
                let results = futures::future::join_all(takers.iter().map(|t| t.try_acquire(now))).await;
                let held = results
                    .iter()
                    .filter(|r| matches!(r, Ok(Acquire::Held(_))))
                    .count();
                assert_eq!(held, 1, "{kind} round {round}: {results:?}");
            }
        }
    }

    #[tokio::test]
    async fn local_takeover_uses_the_lock_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::new(StorageSettings::default());
        let wh = Warehouse::open(&storage, &dir.path().display().to_string()).expect("local");
        let a = LeaseStore::new(&wh, "daily", "a", Duration::from_secs(60));
        let t0 = utc("2026-05-01T06:00:00Z");
        let Acquire::Held(la) = a.try_acquire(t0).await.expect("a") else { panic!("hold") };
        a.release(la, t0, None, None).await.expect("release");
        assert!(dir.path().join("_tenure/leases/daily.json").is_file());
        assert!(dir.path().join("_tenure/leases/daily.json.lock").is_file());
    }
}

#[cfg(test)]
mod hold_tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::StorageSettings;
    use crate::storage::Storage;

    /// Work waits for a held lease, and a holder whose work is dropped (a
    /// run stopped by its timeout) releases the lease instead of leaving it
    /// to expire.
    #[tokio::test]
    async fn a_waiting_holder_gets_the_lease_and_a_dropped_one_releases_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::new(StorageSettings::default());
        let wh = Warehouse::open(&storage, &dir.path().display().to_string()).expect("local");
        let ttl = Duration::from_secs(60);
        let (a, b) = (LeaseStore::new(&wh, "ingest.x", "a", ttl), LeaseStore::new(&wh, "ingest.x", "b", ttl));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);

        let stopped = tokio::time::timeout(Duration::from_millis(300), hold(&a, clock.clone(), std::future::pending::<()>())).await;
        assert!(stopped.is_err(), "the work never ends; the timeout drops it");
        let released = async {
            loop {
                if a.current().await.expect("read").is_some_and(|r| r.released) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), released).await.expect("released soon after the drop");

        // b waits while a holds it, and gets it when a is done.
        let order = std::sync::Mutex::new(Vec::new());
        let first = hold(&a, clock.clone(), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            order.lock().expect("lock").push("a");
        });
        let second = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            hold_when_free(&b, clock.clone(), Duration::from_millis(50), async { order.lock().expect("lock").push("b") }).await
        };
        let (x, y) = tokio::join!(first, second);
        x.expect("a held");
        y.expect("b waited and held");
        assert_eq!(*order.lock().expect("lock"), ["a", "b"]);
    }
}

#[cfg(test)]
mod holder_tests {
    use super::*;

    #[test]
    fn a_dead_process_on_this_host_holds_nothing() {
        let me = holder_id();
        assert!(!holder_is_dead_here(&me), "this process is alive");
        let dead = format!("{}-4294967295-abcdef12", this_host());
        assert!(holder_is_dead_here(&dead) || !std::path::Path::new("/proc/self").exists());
        assert!(!holder_is_dead_here("another-host-1-abcdef12"), "other hosts are never presumed dead");
        assert!(!holder_is_dead_here("garbage"));
    }
}
