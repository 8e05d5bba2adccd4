//! What an incremental run recomputes: the base run whose rows it keeps,
//! `rebuild_from` and `rebuild_from_day`, or why it rebuilds everything; and
//! how a mart's files are laid out so a later run can keep whole months.

use super::*;

/// What a run recomputes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The first local date recomputed (`engine::full_rebuild()` for all):
    /// the first day of a month.
    pub rebuild_from: NaiveDate,
    /// The first local date the models incremental `by day` recompute: the
    /// day after the base's as-of date, or the date of the earliest event
    /// ingested since the base, whichever is earlier. Never before
    /// `rebuild_from`.
    pub rebuild_from_day: NaiveDate,
    /// The run whose published rows before `rebuild_from` are kept.
    pub base: Option<Base>,
    /// Why the run rebuilds everything, when it does.
    pub full_because: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    pub run_id: String,
    /// Mart name -> the Delta version the base published (and still current).
    pub versions: BTreeMap<String, i64>,
    /// Model name -> the state the base kept of it. Every model that is not
    /// a mart has one; a mart without one keeps its published rows.
    pub state: BTreeMap<String, State>,
}

impl Plan {
    pub fn full(because: impl Into<String>) -> Plan {
        Plan {
            rebuild_from: engine::full_rebuild(),
            rebuild_from_day: engine::full_rebuild(),
            base: None,
            full_because: Some(because.into()),
        }
    }

    /// The first local date `model` recomputes.
    pub fn rebuild_from_of(&self, model: &Model) -> NaiveDate {
        if model.by_day {
            self.rebuild_from_day
        } else {
            self.rebuild_from
        }
    }
}

/// What the tables of a run are a function of besides the events and the
/// as-of date: tenure's version, the models' SQL and the other parameters.
pub fn shape_fingerprint(models: &[&Model], params: &Params) -> String {
    let mut text = format!("tenure {}\n", env!("CARGO_PKG_VERSION"));
    text.push_str(&format!(
        "{} {} {} {:?}\n",
        params.timezone, params.currency, params.activity_window_days, params.health
    ));
    for m in models {
        text.push_str(&m.name);
        text.push('\n');
        text.push_str(&m.sql);
    }
    xxh3_hex(text.as_bytes())
}

/// Decide what a run as of `as_of` recomputes, given the run history, the
/// ingest sequence its models read, the current versions of the incremental
/// marts and the names of the other incremental models (`carried`), whose
/// state the base must have kept in `warehouse`. The base is a run of the
/// same `pipeline`: the state of another pipeline's runs is theirs to prune.
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    runs: &[RunReport],
    pipeline: &str,
    shape: &str,
    as_of: NaiveDate,
    tz: chrono_tz::Tz,
    sequence: i64,
    manifest: &Manifest,
    current_versions: &BTreeMap<String, Option<i64>>,
    carried: &[&str],
    warehouse: &Warehouse,
) -> Plan {
    let Some(base) = latest_published(runs, pipeline) else {
        return Plan::full("no earlier run of this pipeline published tables");
    };
    if base.shape.as_deref() != Some(shape) {
        return Plan::full(format!("the SQL or parameters differ from run {}", base.run_id));
    }
    let (Ok(base_as_of), Some(base_sequence)) = (base.as_of.parse::<NaiveDate>(), base.ingest_sequence) else {
        return Plan::full(format!("run {} does not record its as-of date and ingest sequence", base.run_id));
    };
    if base_as_of > as_of {
        return Plan::full(format!("run {} was as of a later date ({base_as_of})", base.run_id));
    }
    if base_sequence > sequence {
        return Plan::full(format!("run {} read events this run does not have", base.run_id));
    }
    let mut versions = BTreeMap::new();
    for (name, current) in current_versions {
        let published = base.tables.iter().find(|t| &t.name == name).map(|t| t.version);
        if published.is_none() || published != *current {
            return Plan::full(format!("mart {name} changed since run {}", base.run_id));
        }
        versions.insert(name.clone(), published.unwrap_or_default());
    }
    let state = match kept_state(base, carried, current_versions, warehouse).await {
        Ok(s) => s,
        Err(because) => return Plan::full(because),
    };
    // The days (and months) that were not final in the base.
    let mut rebuild_from_day = base_as_of + Days::new(1);
    // The months newly ingested events reach back to.
    let spans = match manifest.accepted_since(base_sequence, sequence).await {
        Ok(s) => s,
        Err(e) => return Plan::full(format!("cannot read the ingest manifest: {e}")),
    };
    for span in spans {
        let Some(span) = span else {
            return Plan::full("an ingest entry since the base does not record what it accepted");
        };
        if let Some(micros) = span.earliest_occurred_at {
            let Some(at) = chrono::DateTime::from_timestamp_micros(micros) else {
                return Plan::full("an ingest entry since the base records an impossible timestamp");
            };
            rebuild_from_day = rebuild_from_day.min(at.with_timezone(&tz).date_naive());
        }
    }
    Plan {
        rebuild_from: month_start(rebuild_from_day),
        rebuild_from_day,
        base: Some(Base {
            run_id: base.run_id.clone(),
            versions,
            state,
        }),
        full_because: None,
    }
}

/// The latest run of `pipeline` that published tables: the only candidate
/// base. Runs of other pipelines are not: their state files are pruned when
/// their pipeline publishes again, possibly while this run reads them.
pub(super) fn latest_published<'a>(runs: &'a [RunReport], pipeline: &str) -> Option<&'a RunReport> {
    runs.iter().rev().find(|r| r.pipeline == pipeline && r.succeeded() && !r.tables.is_empty())
}

/// The state the base kept of each incremental model whose objects are all
/// there (one listing of the state folder). A model that is not a mart must have
/// one; a mart without one keeps its published rows instead.
pub(super) async fn kept_state(
    base: &RunReport,
    carried: &[&str],
    marts: &BTreeMap<String, Option<i64>>,
    warehouse: &Warehouse,
) -> Result<BTreeMap<String, State>, String> {
    let dir = warehouse.state();
    let listed: Vec<object_store::ObjectMeta> = dir
        .store
        .list(Some(&dir.prefix))
        .try_collect()
        .await
        .map_err(|e| format!("cannot list the rows run {} kept: {e}", base.run_id))?;
    let present: std::collections::HashSet<String> = listed.iter().filter_map(|m| warehouse.root().relative(&m.location)).collect();
    let mut state = BTreeMap::new();
    for name in carried.iter().copied().chain(marts.keys().map(String::as_str)) {
        // A state whose files do not hold all its rows cannot be kept.
        let kept = base.state.iter().find(|s| s.name == name && s.is_complete());
        let missing = kept.and_then(|k| k.paths().find(|p| !present.contains(*p)));
        match (kept, missing) {
            (Some(k), None) => {
                state.insert(name.to_string(), k.clone());
            }
            (Some(_), Some(path)) if carried.contains(&name) => {
                return Err(format!("the rows run {} kept of model {name} are unreadable: {path} is missing", base.run_id))
            }
            (None, _) if carried.contains(&name) => return Err(format!("run {} kept no rows of model {name}", base.run_id)),
            _ => {}
        }
    }
    Ok(state)
}

/// How the files of the incremental mart `model` (date column `key`) are
/// laid out in a run as of `as_of` that follows `plan`: split where the rows
/// this run recomputes begin, and where those that are not final yet begin
/// (where the next day's run will likely recompute from: the month of the
/// next day, or that day for a mart incremental by day), so that a later run
/// can keep the files before its `rebuild_from`. This run keeps those of its
/// base before its own.
pub fn layout(plan: &Plan, model: &Model, key: &str, as_of: NaiveDate) -> publish::Layout {
    let days = crate::dates::days_since_epoch;
    let next = as_of + Days::new(1);
    let mut bounds = vec![days(if model.by_day { next } else { month_start(next) })];
    let keep = plan.base.as_ref().and_then(|base| base.versions.get(&model.name)).map(|version| publish::Keep {
        version: *version,
        before: days(plan.rebuild_from_of(model)),
    });
    if let Some(k) = &keep {
        bounds.push(k.before);
    }
    bounds.sort_unstable();
    bounds.dedup();
    publish::Layout {
        key: key.to_string(),
        bounds,
        keep,
    }
}
