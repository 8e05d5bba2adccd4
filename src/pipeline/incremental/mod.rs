//! Incremental runs: how much of the published marts a run can keep.
//!
//! Every metric of a month `m` (and every health snapshot `d`) is a function of
//! the events with local dates up to its cutoff, of the run parameters other
//! than the as-of date, and of the SQL. So when the previous run that published
//! (the *base*) had the same SQL and parameters, the rows of the months whose
//! cutoff was final in the base (complete months) and that no newly ingested
//! event reaches back to are still right. The run then recomputes from
//! `rebuild_from`, the first day of the earliest month that is not: the month
//! after the base's last complete month, or the month of the earliest event
//! ingested since the base, whichever is earlier. Models marked `-- incremental:
//! <date column>` keep their rows dated before `rebuild_from` and take the
//! recomputed rows from it on (their SQL computes only those, reading
//! `tenure_rebuild_from()`): the rows the base run kept of them (their
//! *state*: Arrow IPC files under the warehouse's state folder, one per month, written by
//! every run that publishes; a mart whose base kept none keeps its published
//! rows). A model marked `-- incremental: <date column> by day`, whose rows
//! each depend only on the events of their own date, recomputes from
//! `rebuild_from_day` instead: the day after the base's as-of date or the
//! date of the earliest event ingested since the base, whichever is earlier;
//! it is planned in a session where `tenure_rebuild_from()` is that day. The
//! other marts are rebuilt whole. Anything unusual (no base, other SQL or parameters, an
//! earlier as-of date, a mart changed since the base, state the base did not
//! keep, ingest entries that do not say what they accepted) means a full
//! rebuild. `plan`, `read_kept` and `merge` only read; `write_state` and `prune_state`
//! keep the state of the latest run that published.

mod kept;
mod plan;
mod state;
#[cfg(test)]
mod tests;

pub use kept::{merge, read_kept, KeptRows, Merged};
pub use plan::{layout, plan, shape_fingerprint, Base, Plan};
pub use state::{prune_state, write_state, ReadAhead, State, StateError, StatePart};

use super::report::RunReport;
use plan::latest_published;
use crate::catalog::{Layer, Model};
use crate::engine::{self, Built, Params};
use crate::ingest::Manifest;
use crate::publish;
use crate::storage::open_delta_table;
use crate::warehouse::Warehouse;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{Datelike, Days, NaiveDate};
use datafusion::error::DataFusionError;
use datafusion::prelude::{col, lit, SessionContext};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;

/// The first day of the month of `d`.
pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}
/// The first day of the month after the month of `d`.
pub(super) fn next_month(d: NaiveDate) -> NaiveDate {
    month_start(d).checked_add_months(chrono::Months::new(1)).unwrap_or(NaiveDate::MAX)
}
/// XXH3-128 of `bytes`, in hex: the fingerprints of a run's inputs and
/// shape, and the checksum recorded for a state file.
pub(crate) fn xxh3_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}
