//! The one integration test binary (STYLE.md rule 11): tenure tested from the
//! outside, through its CLI and the Delta tables it publishes.
//!
//! - `common`: throwaway projects, running the binary, reading tables back
//!   with the independent Python reader (`tests/py/read_delta.py`).
//! - `ingest`: the raw event contract, `spec/EVENTS.md`, rule by rule.
//! - `metrics`: golden results of the marts (`spec/METRICS.md`) from
//!   hand-computed fixtures, and the data checks.
//! - `incremental`: incremental runs publish what a full rebuild publishes.
//! - `bounded`: decompression bombs and decoder panics cost a row or an
//!   object, never the run or unbounded memory.
//! - `crash`: a run killed at every failpoint recovers to the same tables.
//! - `close`: month close, restatements and `tenure close`.
//! - `clv`: BG/NBD and Gamma-Gamma fit the CDNOW sample as the papers did.
//! - `cli`: `validate` (every problem with file and line), bad arguments,
//!   plain piped logs, the run report.
//! - `s3`: the whole pipeline on a real S3-compatible server (moto) on
//!   127.0.0.1.
//! - `serve`: `tenure serve` queried by `psql` and `psycopg` over the
//!   PostgreSQL protocol.
//! - `vacuum`: `tenure vacuum` after many runs: checkpoints, time travel in
//!   the window, nothing the next incremental run needs deleted.
//! - `workers`: runs on `tenure worker` processes publish the tables of a
//!   run in one process, and survive a lost worker.
//!
//! Needs `python3` with `deltalake` and `pyarrow` (`.ci/run` installs them;
//! `TENURE_TEST_PYTHON` names another interpreter).

mod bounded;
mod cli;
mod close;
mod clv;
mod crash;
mod common;
mod incremental;
mod ingest;
mod metrics;
mod report;
mod s3;
mod serve;
mod vacuum;
mod workers;
