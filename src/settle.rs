//! Delta commits whose answer is lost. A commit is one conditional put of
//! the next log entry; when the connection breaks after the store took it,
//! the writer sees an error (or, when the put was retried, "version already
//! exists", which the Delta writer takes for another writer's commit) for a
//! commit that landed. Every commit of tenure carries a fresh token in its
//! `commitInfo` ([`TOKEN_KEY`]); a commit that fails is settled by reading
//! the log entries written since: it took effect if and only if one of them
//! carries the token. One that did not land is tried again while the failure
//! is transient (a connection or server error); nothing is assumed.

use deltalake::logstore::LogStoreRef;
use deltalake::DeltaTableError;
use std::future::Future;
use std::time::Duration;

/// The `commitInfo` key of a commit's token.
pub const TOKEN_KEY: &str = "tenure.commit";

/// Attempts of one commit when each fails transiently and did not land.
const ATTEMPTS: u32 = 4;
/// The wait before the second attempt; it doubles after each.
const FIRST_WAIT: Duration = Duration::from_millis(500);
/// Log entries read back when settling, at most (a commit lands within a
/// few versions of the one it was built on).
const LOOK_AHEAD: i64 = 1000;

/// A fresh token for one commit.
pub fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The `commitInfo` entry of a commit with `token`.
pub fn token_entry(token: &str) -> (String, serde_json::Value) {
    (TOKEN_KEY.to_string(), serde_json::Value::from(token))
}

/// How a settled commit ended.
#[derive(Debug)]
pub enum Settled<T> {
    /// The commit answered.
    Committed(T),
    /// The commit failed to answer but its entry is in the log at this version.
    Landed(i64),
}

impl Settled<i64> {
    /// The version the commit made.
    pub fn version(&self) -> i64 {
        match self {
            Settled::Committed(version) | Settled::Landed(version) => *version,
        }
    }
}

/// Run `attempt`, one commit carrying `token` of a table whose version was
/// `after` when the commit was built (None: no table yet), until it
/// answers, is found in the log, or fails for good.
pub async fn commit<T, F, Fut>(log_store: &LogStoreRef, after: Option<i64>, token: &str, mut attempt: F) -> Result<Settled<T>, DeltaTableError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DeltaTableError>>,
{
    let mut wait = FIRST_WAIT;
    let mut tried = 0;
    loop {
        tried += 1;
        let error = match attempt().await {
            Ok(done) => return Ok(Settled::Committed(done)),
            Err(e) => e,
        };
        match landed(log_store, after, token).await {
            Ok(Some(version)) => {
                tracing::warn!(version, error = %error, "a commit that reported an error had landed; it counts");
                return Ok(Settled::Landed(version));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the log back to settle a failed commit"),
        }
        if tried >= ATTEMPTS || !is_transient(&error) {
            return Err(error);
        }
        tracing::warn!(error = %error, retry_in = ?wait, "commit failed transiently; trying again");
        tokio::time::sleep(wait.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        wait *= 2;
    }
}

/// The version of the log entry after `after` that carries `token`, if any.
pub async fn landed(log_store: &LogStoreRef, after: Option<i64>, token: &str) -> Result<Option<i64>, DeltaTableError> {
    let first = after.map_or(0, |v| v + 1);
    let needle = format!("\"{TOKEN_KEY}\":\"{token}\"");
    for version in first..first + LOOK_AHEAD {
        let Some(entry) = log_store.read_commit_entry(version as _).await? else {
            return Ok(None);
        };
        if memchr::memmem::find(&entry, needle.as_bytes()).is_some() {
            return Ok(Some(version));
        }
    }
    Ok(None)
}

/// Whether `error` is worth another try: a storage request that failed on
/// the way (a reset connection, a timeout, a server error), not an answer
/// (missing, exists, refused, a conflict with another writer).
pub fn is_transient(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(store) = e.downcast_ref::<object_store::Error>() {
            return matches!(store, object_store::Error::Generic { .. } | object_store::Error::JoinError { .. });
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(io.kind(), ConnectionReset | ConnectionAborted | ConnectionRefused | BrokenPipe | TimedOut | UnexpectedEof | Interrupted);
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_on_the_way_are_transient() {
        let generic = object_store::Error::Generic {
            store: "S3",
            source: "connection reset by peer".into(),
        };
        assert!(is_transient(&DeltaTableError::ObjectStore { source: generic }));
        let exists = object_store::Error::AlreadyExists {
            path: "x".into(),
            source: "exists".into(),
        };
        assert!(!is_transient(&DeltaTableError::ObjectStore { source: exists }));
        assert!(!is_transient(&DeltaTableError::VersionAlreadyExists(3)));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_transient(&reset));
    }

    fn lost_answer() -> DeltaTableError {
        DeltaTableError::ObjectStore {
            source: object_store::Error::Generic {
                store: "S3",
                source: "connection reset by peer".into(),
            },
        }
    }

    #[tokio::test]
    async fn a_commit_that_landed_counts_and_one_that_did_not_is_tried_again() {
        use deltalake::kernel::transaction::CommitBuilder;
        use deltalake::protocol::{DeltaOperation, SaveMode};
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::Storage::new(Default::default());
        let warehouse = crate::warehouse::Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
        let table = warehouse.open_events().await.expect("events");
        let after = table.version().map(|v| v as i64);
        let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
        let commit_once = |token: String| {
            let (table, operation) = (&table, operation.clone());
            async move {
                CommitBuilder::default()
                    .with_app_metadata(std::collections::HashMap::from([token_entry(&token)]))
                    .build(Some(table.snapshot()?), table.log_store(), operation)
                    .await
                    .map(|done| done.version() as i64)
            }
        };

        // The commit lands, then its answer is lost: it counts, once.
        let landed_token = token();
        let mut calls = 0;
        let settled = commit(&table.log_store(), after, &landed_token, || {
            calls += 1;
            let commit = commit_once(landed_token.clone());
            async move {
                commit.await?;
                Err::<i64, _>(lost_answer())
            }
        })
        .await
        .expect("settled");
        assert!(matches!(settled, Settled::Landed(1)), "{settled:?}");
        assert_eq!(calls, 1, "a commit that landed is not made again");

        // The first try fails before anything lands: the second commits.
        let second = token();
        let mut calls = 0;
        let settled = commit(&table.log_store(), Some(1), &second, || {
            calls += 1;
            let first = calls == 1;
            let commit = commit_once(second.clone());
            async move {
                if first {
                    return Err(lost_answer());
                }
                commit.await
            }
        })
        .await
        .expect("committed");
        assert!(matches!(settled, Settled::Committed(2)), "{settled:?}");
        assert_eq!(landed(&table.log_store(), Some(1), &second).await.expect("read"), Some(2));
        assert_eq!(landed(&table.log_store(), Some(2), &second).await.expect("read"), None);

        // An answer (not a failure on the way) is not tried again.
        let mut calls = 0;
        let failed = commit(&table.log_store(), Some(2), &token(), || {
            calls += 1;
            async { Err::<i64, _>(DeltaTableError::VersionAlreadyExists(2)) }
        })
        .await;
        assert!(failed.is_err());
        assert_eq!(calls, 1);
    }
}
