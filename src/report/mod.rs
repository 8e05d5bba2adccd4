//! The finance report of one publishing run: a single self-contained HTML
//! page (inline SVG charts and CSS, no script, nothing from the network),
//! every mart as CSV, and the finance tables as an Excel workbook. It reads
//! the marts at the versions the run's report records, through the same
//! read-only query service as `tenure query`, so its figures are the marts'
//! to the digit shown. It never writes to the warehouse's tables.

mod charts;
mod export;
mod format;

use crate::pipeline::report::RunReport;
use crate::query::QueryService;
use crate::warehouse::{Warehouse, EVENTS, REJECTS};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use format::Money;
use serde::Serialize;
use std::collections::BTreeMap;

pub use export::csv_of;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("run history: {0}")]
    History(#[from] crate::pipeline::history::HistoryError),
    #[error("no publishing run in the warehouse {0}; run a pipeline first")]
    NoRun(String),
    #[error("run {0} published no tables; name a run that did")]
    NotPublishing(String),
    #[error(transparent)]
    Query(#[from] crate::query::QueryError),
    #[error("reading {table}: {source}")]
    Read {
        table: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("the page template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("the workbook: {0}")]
    Workbook(#[from] rust_xlsxwriter::XlsxError),
    #[error("a CSV export: {0}")]
    Csv(#[from] arrow::error::ArrowError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
}

/// The finance tables of the workbook, in sheet order (those the run did
/// not publish are left out).
const WORKBOOK: [&str; 8] = [
    "mrr_bridge_monthly",
    "ndr_trailing_12m",
    "retention_kpis_monthly",
    "finance_kpis_monthly",
    "reported_mrr_bridge_monthly",
    "reported_ndr_trailing_12m",
    "reported_retention_kpis_monthly",
    "reported_finance_kpis_monthly",
];

/// The files of a report, by path relative to its folder.
pub struct Report {
    pub run_id: String,
    pub files: Vec<(String, Vec<u8>)>,
}

/// The run a report is of: `run_id`, or the latest succeeded run that
/// published tables.
pub async fn select_run(warehouse: &Warehouse, run_id: Option<&str>) -> Result<RunReport, ReportError> {
    let run = match run_id {
        Some(id) => crate::pipeline::history::show(warehouse, id).await?,
        None => crate::pipeline::history::list(warehouse)
            .await?
            .into_iter()
            .rev()
            .find(|r| r.succeeded() && !r.tables.is_empty())
            .ok_or_else(|| ReportError::NoRun(warehouse.display()))?,
    };
    if !run.succeeded() || run.tables.is_empty() {
        return Err(ReportError::NotPublishing(run.run_id));
    }
    Ok(run)
}

/// The marts of one run, read at the versions it published.
struct Source {
    service: QueryService,
    versions: BTreeMap<String, i64>,
}

impl Source {
    fn has(&self, table: &str) -> bool {
        self.versions.contains_key(table)
    }

    /// The SQL name of `table` at the run's version.
    fn name(&self, table: &str) -> String {
        match self.versions.get(table) {
            Some(v) => format!("\"{table}@v{v}\""),
            None => format!("\"{table}\""),
        }
    }

    /// Run `sql`, where `{}` stands for `table` at the run's version.
    async fn read(&self, table: &str, sql: &str) -> Result<Vec<RecordBatch>, ReportError> {
        let sql = sql.replace("{}", &self.name(table));
        let err = |source| ReportError::Read {
            table: table.to_string(),
            source,
        };
        self.service.sql(&sql).await.map_err(err)?.collect().await.map_err(err)
    }
}

/// A column of query results as text (NULL: None), exactly as Arrow casts
/// it (decimals with their scale, dates ISO).
fn texts(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let Some(c) = b.column_by_name(column) else { continue };
        let Ok(c) = arrow::compute::cast(c, &DataType::Utf8) else { continue };
        out.extend(c.as_string::<i32>().iter().map(|v| v.map(str::to_string)));
    }
    out
}

/// A column of query results as doubles.
fn floats(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for b in batches {
        let Some(c) = b.column_by_name(column) else { continue };
        let Ok(c) = arrow::compute::cast(c, &DataType::Float64) else { continue };
        let c = c.as_primitive::<Float64Type>();
        out.extend((0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i))));
    }
    out
}

fn first<T: Clone>(v: &[Option<T>]) -> Option<T> {
    v.first().cloned().flatten()
}

#[derive(Serialize)]
struct Kpi {
    label: &'static str,
    value: String,
    note: String,
}

#[derive(Serialize)]
struct Chart {
    title: String,
    svg: String,
}

#[derive(Serialize)]
struct Table {
    title: String,
    columns: Vec<String>,
    /// Whether each column is right-aligned (numbers).
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
    note: String,
}

#[derive(Serialize)]
struct Section {
    id: &'static str,
    title: &'static str,
    intro: String,
    charts: Vec<Chart>,
    tables: Vec<Table>,
}

/// Build the report of `run` (see [`select_run`]): the page, the CSV files
/// and the workbook.
pub async fn build(warehouse: &Warehouse, run: &RunReport) -> Result<Report, ReportError> {
    let versions: BTreeMap<String, i64> = run.tables.iter().map(|t| (t.name.clone(), t.version)).collect();
    let source = Source {
        service: QueryService::open(warehouse.clone()).await?,
        versions,
    };
    let money = Money::new(&run.currency);
    let mut sections = Vec::new();
    let kpis = headline(&source, &money).await?;
    sections.push(bridge_section(&source, &money).await?);
    sections.push(retention_section(&source).await?);
    sections.push(cohort_section(&source).await?);
    sections.push(health_section(&source, &money).await?);
    if let Some(s) = close_section(&source, &money).await? {
        sections.push(s);
    }
    // The newest event the run could see: `events` at the version the run
    // appended, or (a run that ingested nothing) as it is now, up to D.
    let data_through = match run.as_of.parse::<chrono::NaiveDate>() {
        Ok(as_of) => {
            let sql = format!("select cast(max(event_date) as varchar) as d from {{}} where event_date <= date '{as_of}'");
            let b = source.read(EVENTS, &sql).await?;
            first(&texts(&b, "d")).unwrap_or_else(|| "–".into())
        }
        Err(_) => "–".into(),
    };
    let provenance = vec![
        ("Run", run.run_id.clone()),
        ("Pipeline", run.pipeline.clone()),
        ("As of", run.as_of.clone()),
        ("Timezone", run.timezone.clone()),
        ("Currency", run.currency.clone()),
        ("Data through", data_through),
        ("Run started", run.started_at.clone()),
        ("Input fingerprint", run.inputs.clone().unwrap_or_else(|| "–".into())),
        ("tenure version", env!("CARGO_PKG_VERSION").to_string()),
        ("Warehouse", warehouse.display()),
    ];
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", include_str!("report.html"))?;
    let page = env.get_template("report.html")?.render(minijinja::context! {
        as_of => run.as_of,
        currency => run.currency,
        run_id => run.run_id,
        kpis => kpis,
        sections => sections,
        provenance => provenance,
    })?;

    let mut files = vec![("index.html".to_string(), page.into_bytes())];
    let marts: Vec<String> = source.versions.keys().filter(|t| *t != EVENTS && *t != REJECTS).cloned().collect();
    let mut sheets = Vec::new();
    for table in &marts {
        // In the order of the first two columns (the key of most marts), so
        // that exports are stable from run to run.
        let batches = source.read(table, "select * from {} order by 1, 2").await?;
        files.push((format!("csv/{table}.csv"), csv_of(&batches)?));
        if WORKBOOK.contains(&table.as_str()) {
            sheets.push((table.clone(), batches));
        }
    }
    sheets.sort_by_key(|(t, _)| WORKBOOK.iter().position(|w| w == t));
    files.push(("finance.xlsx".to_string(), export::workbook(&sheets, &money)?));
    Ok(Report {
        run_id: run.run_id.clone(),
        files,
    })
}

/// Write a report's files under a local folder.
pub fn write_dir(report: &Report, dir: &std::path::Path) -> Result<(), ReportError> {
    for (path, bytes) in &report.files {
        let target = dir.join(path);
        let err = |source| ReportError::Write {
            path: target.display().to_string(),
            source,
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::write(&target, bytes).map_err(err)?;
    }
    Ok(())
}

/// Write a report's files under `location` (a warehouse's reports folder
/// or any other), then the same files under `<location>/latest/`, so that
/// `latest/` always holds a whole report.
pub async fn write_store(report: &Report, location: &crate::storage::Location) -> Result<(), ReportError> {
    for folder in [report.run_id.as_str(), "latest"] {
        for (path, bytes) in &report.files {
            let target = location.path(&format!("{folder}/{path}"));
            object_store::ObjectStoreExt::put(&location.store, &target, bytes.clone().into()).await.map_err(|source| ReportError::Store {
                path: format!("{}/{folder}/{path}", location.display()),
                source,
            })?;
        }
    }
    Ok(())
}

/// The report of the run just finished, written to the warehouse (what
/// `tenure schedule` does after a publishing run of a pipeline with
/// `report = true`).
pub async fn publish(warehouse: &Warehouse, run: &RunReport) -> Result<(), ReportError> {
    let report = build(warehouse, run).await?;
    write_store(&report, &warehouse.reports()).await
}

/// Headline KPIs as of D: `kpi_summary`, and the quick ratio of the latest
/// complete month.
async fn headline(source: &Source, money: &Money) -> Result<Vec<Kpi>, ReportError> {
    if !source.has("kpi_summary") {
        return Ok(Vec::new());
    }
    let k = source.read("kpi_summary", "select * from {}").await?;
    let text = |c: &str| first(&texts(&k, c));
    let float = |c: &str| first(&floats(&k, c));
    let (quick, quick_month) = if source.has("finance_kpis_monthly") {
        let b = source
            .read(
                "finance_kpis_monthly",
                "select quick_ratio, cast(month as varchar) as month from {} where segment = 'all' and is_complete order by month desc limit 1",
            )
            .await?;
        (first(&floats(&b, "quick_ratio")), first(&texts(&b, "month")))
    } else {
        (None, None)
    };
    Ok(vec![
        Kpi { label: "MRR", value: money.format(text("mrr").as_deref()), note: format!("as of {}", text("as_of").unwrap_or_default()) },
        Kpi { label: "ARR", value: money.format(text("arr").as_deref()), note: "12 × MRR".into() },
        Kpi { label: "NDR (12 months)", value: format::percent(float("ndr_12m")), note: "net dollar retention, trailing 12 months".into() },
        Kpi { label: "GRR (12 months)", value: format::percent(float("grr_12m")), note: "gross dollar retention, trailing 12 months".into() },
        Kpi {
            label: "Quick ratio",
            value: format::ratio(quick),
            note: quick_month.map_or_else(|| "no complete month".into(), |m| format!("{}", format::month(&m))),
        },
        Kpi { label: "Logo churn (annual)", value: format::percent(float("annual_logo_churn")), note: "customers lost over the last 12 complete months".into() },
        Kpi { label: "NPS (90 days)", value: format::score(float("nps_90d")), note: "promoters − detractors".into() },
        Kpi { label: "CSAT (90 days)", value: format::percent(float("csat_pct_90d").map(|v| v / 100.0)), note: "satisfied responses".into() },
        Kpi { label: "Active customers", value: format::count(float("active_customers")), note: format!("{} paying", format::count(float("paying_customers"))) },
    ])
}

/// The MRR bridge: the latest complete month's waterfall, 12 months of
/// movements, and the bridge rows.
async fn bridge_section(source: &Source, money: &Money) -> Result<Section, ReportError> {
    let mut section = Section {
        id: "bridge",
        title: "MRR bridge",
        intro: "How MRR moved: new, reactivated and expanded revenue in, contraction and churn out (all segments).".into(),
        charts: Vec::new(),
        tables: Vec::new(),
    };
    if !source.has("mrr_bridge_monthly") {
        return Ok(section);
    }
    let b = source
        .read(
            "mrr_bridge_monthly",
            "select cast(month as varchar) as month, start_mrr, new_mrr, reactivation_mrr, expansion_mrr, contraction_mrr, \
             churned_mrr, end_mrr, ndr, grr, is_complete from {} where segment = 'all' order by month",
        )
        .await?;
    let months = texts(&b, "month");
    let complete: Vec<bool> = texts(&b, "is_complete").iter().map(|v| v.as_deref() == Some("true")).collect();
    let cols = ["start_mrr", "new_mrr", "reactivation_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "end_mrr"];
    let values: Vec<Vec<Option<f64>>> = cols.iter().map(|c| floats(&b, c)).collect();
    let exact: Vec<Vec<Option<String>>> = cols.iter().map(|c| texts(&b, c)).collect();
    if let Some(i) = complete.iter().rposition(|c| *c) {
        let v = |k: usize| values[k][i].unwrap_or(0.0);
        let steps = vec![
            charts::Step { label: "start".into(), value: v(0), total: true },
            charts::Step { label: "new".into(), value: v(1), total: false },
            charts::Step { label: "reactivation".into(), value: v(2), total: false },
            charts::Step { label: "expansion".into(), value: v(3), total: false },
            charts::Step { label: "contraction".into(), value: -v(4), total: false },
            charts::Step { label: "churned".into(), value: -v(5), total: false },
            charts::Step { label: "end".into(), value: v(6), total: true },
        ];
        let month = format::month(months[i].as_deref().unwrap_or_default());
        let title = format!("MRR bridge, {month}");
        push_chart(&mut section, &title, charts::waterfall(&title, &steps));
    }
    let last = months.len().saturating_sub(12);
    let movements: Vec<charts::Movements> = (last..months.len())
        .map(|i| charts::Movements {
            month: format::short_month(months[i].as_deref().unwrap_or_default()),
            new: values[1][i].unwrap_or(0.0),
            reactivation: values[2][i].unwrap_or(0.0),
            expansion: values[3][i].unwrap_or(0.0),
            contraction: values[4][i].unwrap_or(0.0),
            churned: values[5][i].unwrap_or(0.0),
        })
        .collect();
    push_chart(&mut section, "MRR movements, last 12 months", charts::movements("MRR movements, last 12 months", &movements));
    let ndr = floats(&b, "ndr");
    let grr = floats(&b, "grr");
    let rows = (last..months.len())
        .rev()
        .map(|i| {
            let mut row = vec![format::month(months[i].as_deref().unwrap_or_default())];
            row.extend(exact.iter().map(|c| money.format(c[i].as_deref())));
            row.push(format::percent(ndr[i]));
            row.push(format::percent(grr[i]));
            row.push(if complete[i] { "yes".into() } else { "no (to date)".into() });
            row
        })
        .collect();
    section.tables.push(Table {
        title: "Bridge, last 12 months (all segments)".into(),
        columns: ["Month", "Start", "New", "Reactivation", "Expansion", "Contraction", "Churned", "End", "NDR", "GRR", "Complete"]
            .map(String::from)
            .to_vec(),
        numeric: vec![false, true, true, true, true, true, true, true, true, true, false],
        rows,
        note: "From mrr_bridge_monthly; NDR and GRR here are the month's bridge ratios.".into(),
    });
    Ok(section)
}

fn push_chart(section: &mut Section, title: &str, svg: Result<String, charts::ChartError>) {
    match svg {
        Ok(svg) => section.charts.push(Chart { title: title.to_string(), svg }),
        Err(e) => {
            tracing::warn!(error = %e, "chart left out of the report");
            section.intro.push_str(&format!(" (The chart \"{title}\" could not be drawn: {e}.)"));
        }
    }
}

/// NDR and GRR month by month: the bridge form and the trailing-12-months form.
async fn retention_section(source: &Source) -> Result<Section, ReportError> {
    let mut section = Section {
        id: "retention",
        title: "Net and gross dollar retention",
        intro: "Each month's bridge ratios (end of month over start) and the trailing twelve months (customers of a year ago, today).".into(),
        charts: Vec::new(),
        tables: Vec::new(),
    };
    if !source.has("mrr_bridge_monthly") || !source.has("ndr_trailing_12m") {
        return Ok(section);
    }
    let bridge = source
        .read("mrr_bridge_monthly", "select cast(month as varchar) as month, ndr, grr from {} where segment = 'all' order by month")
        .await?;
    let trailing = source
        .read("ndr_trailing_12m", "select cast(month as varchar) as month, ndr_12m, grr_12m from {} where segment = 'all' order by month")
        .await?;
    let months: Vec<String> = texts(&bridge, "month").into_iter().flatten().collect();
    let by_month = |b: &[RecordBatch], c: &str| -> Vec<Option<f64>> {
        let m: BTreeMap<String, Option<f64>> = texts(b, "month").into_iter().flatten().zip(floats(b, c)).collect();
        months.iter().map(|k| m.get(k).copied().flatten()).collect()
    };
    let series = vec![
        charts::Line { name: "NDR, trailing 12 months".into(), values: by_month(&trailing, "ndr_12m") },
        charts::Line { name: "GRR, trailing 12 months".into(), values: by_month(&trailing, "grr_12m") },
        charts::Line { name: "NDR, month (bridge)".into(), values: by_month(&bridge, "ndr") },
        charts::Line { name: "GRR, month (bridge)".into(), values: by_month(&bridge, "grr") },
    ];
    let labels: Vec<String> = months.iter().map(|m| format::short_month(m)).collect();
    push_chart(&mut section, "NDR and GRR", charts::lines("NDR and GRR", &labels, &series));
    let last = months.len().saturating_sub(12);
    let rows = (last..months.len())
        .rev()
        .map(|i| {
            let mut row = vec![format::month(&months[i])];
            row.extend(series.iter().map(|s| format::percent(s.values[i])));
            row
        })
        .collect();
    section.tables.push(Table {
        title: "Last 12 months".into(),
        columns: ["Month", "NDR 12m", "GRR 12m", "NDR (month)", "GRR (month)"].map(String::from).to_vec(),
        numeric: vec![false, true, true, true, true],
        rows,
        note: "From ndr_trailing_12m and mrr_bridge_monthly (segment all); blank where the base is empty.".into(),
    });
    Ok(section)
}

/// Cohort heatmaps: logo and revenue retention by months since the cohort.
async fn cohort_section(source: &Source) -> Result<Section, ReportError> {
    let mut section = Section {
        id: "cohorts",
        title: "Cohorts",
        intro: "Each row is the customers who started in a month; each column a month later (+0 is the cohort month). Cells are percent retained.".into(),
        charts: Vec::new(),
        tables: Vec::new(),
    };
    if !source.has("cohort_retention") {
        return Ok(section);
    }
    let b = source
        .read(
            "cohort_retention",
            "select cast(cohort_month as varchar) as cohort_month, months_since, logo_retention, revenue_retention from {} \
             where cohort_month >= (select max(cohort_month) from {}) - interval '23' month order by cohort_month, months_since",
        )
        .await?;
    let cohorts_all = texts(&b, "cohort_month");
    let since = floats(&b, "months_since");
    let mut cohorts: Vec<String> = cohorts_all.iter().flatten().cloned().collect();
    cohorts.dedup();
    let columns = since.iter().flatten().fold(0.0f64, |m, v| m.max(*v)) as usize + 1;
    for (column, title) in [("logo_retention", "Logo retention by cohort"), ("revenue_retention", "Revenue retention by cohort")] {
        let values = floats(&b, column);
        let mut cells = vec![vec![None; columns]; cohorts.len()];
        let mut max: f64 = 1.0;
        for ((c, s), v) in cohorts_all.iter().zip(&since).zip(&values) {
            let (Some(c), Some(s)) = (c, s) else { continue };
            if let Some(r) = cohorts.iter().position(|x| x == c) {
                cells[r][*s as usize] = *v;
                max = max.max(v.unwrap_or(0.0));
            }
        }
        let labels: Vec<String> = cohorts.iter().map(|c| format::short_month(c)).collect();
        push_chart(&mut section, title, charts::heatmap(title, &labels, columns, &cells, max));
    }
    Ok(section)
}

/// Health bands over time and the at-risk list.
async fn health_section(source: &Source, money: &Money) -> Result<Section, ReportError> {
    let mut section = Section {
        id: "health",
        title: "Customer health",
        intro: "Customers by health band at each snapshot, and the at-risk customers as of D by MRR.".into(),
        charts: Vec::new(),
        tables: Vec::new(),
    };
    if source.has("customer_health") {
        let b = source
            .read(
                "customer_health",
                "select cast(snapshot_date as varchar) as snapshot_date, \
                 count(case when band = 'green' then 1 end) as green, count(case when band = 'yellow' then 1 end) as yellow, \
                 count(case when band = 'red' then 1 end) as red from {} group by snapshot_date order by snapshot_date",
            )
            .await?;
        let dates = texts(&b, "snapshot_date");
        let counts: Vec<[f64; 3]> = {
            let (g, y, r) = (floats(&b, "green"), floats(&b, "yellow"), floats(&b, "red"));
            (0..dates.len()).map(|i| [g[i].unwrap_or(0.0), y[i].unwrap_or(0.0), r[i].unwrap_or(0.0)]).collect()
        };
        let last = dates.len().saturating_sub(24);
        let labels: Vec<String> = dates[last..].iter().map(|d| format::short_month(d.as_deref().unwrap_or_default())).collect();
        push_chart(&mut section, "Customers by health band", charts::bands("Customers by health band", &labels, &counts[last..]));
    }
    if source.has("at_risk_customers") {
        let b = source
            .read(
                "at_risk_customers",
                "select risk_rank, customer_id, segment, mrr, health_score, band, score_change, top_drivers, rfm_segment \
                 from {} order by risk_rank limit 25",
            )
            .await?;
        let cols = ["risk_rank", "customer_id", "segment", "mrr", "health_score", "band", "score_change", "top_drivers", "rfm_segment"];
        let t: Vec<Vec<Option<String>>> = cols.iter().map(|c| texts(&b, c)).collect();
        let f: Vec<Vec<Option<f64>>> = cols.iter().map(|c| floats(&b, c)).collect();
        let rows = (0..t[0].len())
            .map(|i| {
                vec![
                    t[0][i].clone().unwrap_or_default(),
                    t[1][i].clone().unwrap_or_default(),
                    t[2][i].clone().unwrap_or_default(),
                    money.format(t[3][i].as_deref()),
                    format::fixed(f[4][i], 1),
                    t[5][i].clone().unwrap_or_default(),
                    format::signed(f[6][i], 1),
                    t[7][i].clone().unwrap_or_default().replace(',', ", "),
                    t[8][i].clone().unwrap_or_else(|| "–".into()),
                ]
            })
            .collect();
        section.tables.push(Table {
            title: "At risk, top 25 by MRR".into(),
            columns: ["#", "Customer", "Segment", "MRR", "Health", "Band", "Change", "Drivers", "RFM segment"].map(String::from).to_vec(),
            numeric: vec![true, false, false, true, true, false, true, false, false],
            rows,
            note: "From at_risk_customers: band red or a score drop of 15 points or more since the previous snapshot.".into(),
        });
    }
    Ok(section)
}

/// Closed months and restatements, where the month close exists.
async fn close_section(source: &Source, money: &Money) -> Result<Option<Section>, ReportError> {
    if !source.has("reported_mrr_bridge_monthly") {
        return Ok(None);
    }
    let mut section = Section {
        id: "close",
        title: "Closed months and restatements",
        intro: "The months finance closed, with the MRR it reported, and every figure of a closed month that differs now.".into(),
        charts: Vec::new(),
        tables: Vec::new(),
    };
    let b = source
        .read(
            "reported_mrr_bridge_monthly",
            "select cast(month as varchar) as month, close_version, cast(closed_on as varchar) as closed_on, end_mrr from {} \
             where segment = 'all' order by month desc, close_version desc limit 12",
        )
        .await?;
    let t = ["month", "close_version", "closed_on", "end_mrr"].map(|c| texts(&b, c));
    section.tables.push(Table {
        title: "Latest closes".into(),
        columns: ["Month", "Close version", "Closed on", "Reported end MRR"].map(String::from).to_vec(),
        numeric: vec![false, true, false, true],
        rows: (0..t[0].len())
            .map(|i| {
                vec![
                    format::month(t[0][i].as_deref().unwrap_or_default()),
                    t[1][i].clone().unwrap_or_default(),
                    t[2][i].clone().unwrap_or_default(),
                    money.format(t[3][i].as_deref()),
                ]
            })
            .collect(),
        note: "From reported_mrr_bridge_monthly (segment all).".into(),
    });
    if source.has("restatements") {
        let b = source
            .read(
                "restatements",
                "select cast(month as varchar) as month, table_name, segment, column_name, reported, current, close_version from {} \
                 order by month desc, table_name, segment, column_name limit 50",
            )
            .await?;
        let cols = ["month", "table_name", "segment", "column_name", "reported", "current", "close_version"];
        let t: Vec<Vec<Option<String>>> = cols.iter().map(|c| texts(&b, c)).collect();
        let rows: Vec<Vec<String>> = (0..t[0].len())
            .map(|i| cols.iter().enumerate().map(|(k, _)| t[k][i].clone().unwrap_or_else(|| "NULL".into())).collect())
            .collect();
        let note = if rows.is_empty() {
            "No figure of a closed month differs from what was reported.".to_string()
        } else {
            "From restatements (first 50): each differing cell, as reported and as it is now.".to_string()
        };
        section.tables.push(Table {
            title: "Restatements".into(),
            columns: ["Month", "Table", "Segment", "Column", "Reported", "Current", "Close version"].map(String::from).to_vec(),
            numeric: vec![false, false, false, false, true, true, true],
            rows,
            note,
        });
    }
    Ok(Some(section))
}
