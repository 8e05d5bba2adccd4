//! tenure: a batch pipeline from raw customer events to the retention numbers
//! a company runs on (MRR movements, NDR/GRR, cohorts, health scores).
//!
//! Raw objects are ingested from object storage into the Delta tables
//! `events` and `rejects` ([`ingest`]), SQL models from `sql/` are run in
//! dependency order by DataFusion ([`catalog`], [`engine`]), and the marts are
//! published as Delta tables ([`publish`]) by one run ([`pipeline`]).

pub mod bench;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod close;
pub mod churn;
pub mod clv;
pub mod config;
pub mod dates;
pub mod demo;
pub mod engine;
pub mod fit;
pub mod ingest;
pub mod lease;
pub mod pipeline;
pub mod problem;
pub mod publish;
pub mod query;
pub mod report;
pub mod scheduler;
pub mod serve;
pub mod settle;
pub mod storage;
pub mod vacuum;
pub mod validate;
pub mod warehouse;

/// Crash-test hook: when the environment variable `TENURE_FAILPOINT` names
/// this point, the process aborts here, as if killed.
pub fn failpoint(name: &str) {
    if std::env::var("TENURE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Bug-test hook: when `TENURE_FAILPOINT` names this point, the calling
/// thread panics here, as if a library under it had a bug.
pub fn panic_point(name: &str) {
    if std::env::var("TENURE_FAILPOINT").is_ok_and(|v| v == name) {
        panic!("failpoint {name}: panicking");
    }
}
