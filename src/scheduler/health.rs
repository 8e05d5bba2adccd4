//! The scheduler's health endpoint: `GET /healthz` answers `200 ok` while
//! every scheduled pipeline succeeded recently enough, else `503` naming the
//! pipelines that did not ([`Health`]); `GET /metrics` the per-pipeline
//! counters in the Prometheus text format. A small HTTP/1.1 responder on a
//! tokio `TcpListener` (one request per connection, then close); it reads
//! only metrics, schedules and the clock, and never changes the scheduler.

use super::cron::CronSchedule;
use crate::clock::Clock;
use chrono::{DateTime, TimeZone, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scheduler has done, per pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineMetrics {
    /// Attempts run (each retry counts).
    pub runs_total: u64,
    /// Attempts that failed.
    pub failures_total: u64,
    /// Attempts stopped by the pipeline's `run_timeout_seconds` (failures too).
    pub timeouts_total: u64,
    /// Retries scheduled after a transient failure.
    pub retries_total: u64,
    /// Slots skipped: already run by another scheduler, or missed under the
    /// catch-up policy.
    pub skipped_total: u64,
    pub last_run_duration_seconds: Option<f64>,
    /// Rows accepted by ingest, summed over attempts.
    pub rows_ingested_total: u64,
    /// Unix time of the last successful run's end: run here, by another
    /// scheduler on the same warehouse, or found in the run history at start.
    pub last_success_timestamp_seconds: Option<f64>,
    /// 1 while a run of this pipeline is in progress here.
    pub running: bool,
}

/// Metrics of every scheduled pipeline, shared by the workers and the endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    pipelines: Mutex<BTreeMap<String, PipelineMetrics>>,
}

impl Metrics {
    pub fn new<'a>(pipelines: impl IntoIterator<Item = &'a str>) -> Self {
        let map = pipelines.into_iter().map(|p| (p.to_string(), PipelineMetrics::default())).collect();
        Metrics {
            pipelines: Mutex::new(map),
        }
    }

    /// Change the metrics of one pipeline.
    pub fn update(&self, pipeline: &str, f: impl FnOnce(&mut PipelineMetrics)) {
        let mut map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(pipeline.to_string()).or_default());
    }

    pub fn get(&self, pipeline: &str) -> PipelineMetrics {
        let map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        map.get(pipeline).cloned().unwrap_or_default()
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = String::new();
        type Field = fn(&PipelineMetrics) -> Option<f64>;
        let families: [(&str, &str, &str, Field); 9] = [
            ("tenure_runs_total", "counter", "Pipeline runs started by the scheduler (each retry counts).", |m| Some(m.runs_total as f64)),
            ("tenure_run_failures_total", "counter", "Scheduled runs that failed.", |m| Some(m.failures_total as f64)),
            ("tenure_run_timeouts_total", "counter", "Scheduled runs stopped by their run_timeout_seconds (counted as failures too).", |m| Some(m.timeouts_total as f64)),
            ("tenure_run_retries_total", "counter", "Retries after a transient failure.", |m| Some(m.retries_total as f64)),
            ("tenure_slots_skipped_total", "counter", "Schedule slots not run here: run by another scheduler, or missed under the catch-up policy.", |m| Some(m.skipped_total as f64)),
            ("tenure_last_run_duration_seconds", "gauge", "Duration of the last scheduled run.", |m| m.last_run_duration_seconds),
            ("tenure_rows_ingested_total", "counter", "Rows accepted by ingest in scheduled runs.", |m| Some(m.rows_ingested_total as f64)),
            ("tenure_last_success_timestamp_seconds", "gauge", "Unix time the last successful run of the pipeline ended (run here, by another scheduler, or in the run history at start).", |m| m.last_success_timestamp_seconds),
            ("tenure_run_in_progress", "gauge", "1 while a scheduled run is in progress in this process.", |m| Some(if m.running { 1.0 } else { 0.0 })),
        ];
        for (name, kind, help, field) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (pipeline, m) in &map {
                if let Some(v) = field(m) {
                    let _ = writeln!(out, "{name}{{pipeline=\"{}\"}} {}", escape_label(pipeline), format_value(v));
                }
            }
        }
        out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// How many schedule intervals a pipeline's last success may be old before
/// `/healthz` reports it.
pub const STALE_AFTER_INTERVALS: i32 = 2;

/// What `/healthz` judges: each scheduled pipeline's last success against
/// its schedule, on the scheduler's clock.
pub struct Health {
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Every scheduled pipeline and its schedule.
    pub schedules: Vec<(String, CronSchedule)>,
    /// When the scheduler started: what a pipeline with no success on record
    /// is measured from.
    pub since: DateTime<Utc>,
}

/// A pipeline whose last success is too old.
#[derive(Debug, Clone, PartialEq)]
pub struct Stale {
    pub pipeline: String,
    pub last_success: Option<DateTime<Utc>>,
    /// The schedule interval it was judged by.
    pub interval: chrono::Duration,
    pub now: DateTime<Utc>,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let limit = format_span(self.interval * STALE_AFTER_INTERVALS);
        match self.last_success {
            Some(t) => write!(
                f,
                "pipeline {}: last success at {} ({} ago), more than {limit} (twice its schedule interval of {})",
                self.pipeline,
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                format_span(self.now - t),
                format_span(self.interval)
            ),
            None => write!(
                f,
                "pipeline {}: no successful run on record, and none for more than {limit} (twice its schedule interval of {})",
                self.pipeline,
                format_span(self.interval)
            ),
        }
    }
}

fn format_span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match (s / 86_400, s % 86_400 / 3600, s % 3600 / 60) {
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, m) => format!("{d}d{h:02}h{m:02}m"),
    }
}

/// The interval `schedule` is judged by at `now`: the longer of the two
/// gaps between consecutive fire times around now (the one that ended with
/// the last fire, and the one in progress), so that a schedule with uneven
/// gaps (weekdays only) is judged by the longer gap it is in.
pub fn interval(schedule: &CronSchedule, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let gap = |a: DateTime<Utc>| schedule.next_after(a).map(|b| b - a);
    match schedule.latest_at_or_before(now) {
        Some(last) => {
            let before = schedule.latest_at_or_before(last - chrono::Duration::seconds(1));
            let ended = before.and_then(gap);
            let current = gap(last);
            ended.into_iter().chain(current).max()
        }
        // It never fired yet: the first gap ahead.
        None => schedule.next_after(now).and_then(gap),
    }
}

impl Health {
    /// The pipelines whose last success (or, without one, the scheduler's
    /// start) is older than twice their schedule interval.
    pub fn stale(&self) -> Vec<Stale> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for (pipeline, schedule) in &self.schedules {
            let Some(interval) = interval(schedule, now) else {
                continue;
            };
            let last_success = self
                .metrics
                .get(pipeline)
                .last_success_timestamp_seconds
                .and_then(|s| Utc.timestamp_millis_opt((s * 1000.0) as i64).single());
            let reference = last_success.unwrap_or(self.since);
            if now - reference > interval * STALE_AFTER_INTERVALS {
                out.push(Stale {
                    pipeline: pipeline.clone(),
                    last_success,
                    interval,
                    now,
                });
            }
        }
        out
    }
}

/// Bind the endpoint (port 0 picks a free port); the address it got.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Answer requests until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "health endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &health).await {
                tracing::debug!(error = %e, "health endpoint: connection dropped");
            }
        });
    }
}

async fn respond(mut stream: TcpStream, health: &Health) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 16 * 1024 {
            return write(&mut stream, "431 Request Header Fields Too Large", "text/plain", "request head too large\n").await;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/healthz") => {
            let stale = health.stale();
            if stale.is_empty() {
                write(&mut stream, "200 OK", "text/plain; charset=utf-8", "ok\n").await
            } else {
                let mut body = String::from("unhealthy\n");
                for s in &stale {
                    let _ = writeln!(body, "{s}");
                }
                write(&mut stream, "503 Service Unavailable", "text/plain; charset=utf-8", &body).await
            }
        }
        ("GET", "/metrics") => {
            write(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &health.metrics.render()).await
        }
        ("GET", _) => write(&mut stream, "404 Not Found", "text/plain", "not found; try /healthz or /metrics\n").await,
        _ => write(&mut stream, "405 Method Not Allowed", "text/plain", "only GET\n").await,
    }
}

async fn write(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn healthz_and_metrics() {
        let metrics = Arc::new(Metrics::new(["daily"]));
        metrics.update("daily", |m| {
            m.runs_total = 3;
            m.failures_total = 1;
            m.timeouts_total = 1;
            m.rows_ingested_total = 1200;
            m.last_run_duration_seconds = Some(1.5);
            m.last_success_timestamp_seconds = Some(1_777_600_000.0);
        });
        let (listener, addr) = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let health = Health {
            metrics: metrics.clone(),
            clock: Arc::new(crate::clock::SystemClock),
            schedules: Vec::new(),
            since: Utc::now(),
        };
        let server = tokio::spawn(serve(listener, Arc::new(health)));

        let r = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nok\n"), "{r}");

        let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("content-type: text/plain; version=0.0.4"), "{r}");
        for line in [
            "# TYPE tenure_runs_total counter",
            "tenure_runs_total{pipeline=\"daily\"} 3",
            "tenure_run_failures_total{pipeline=\"daily\"} 1",
            "tenure_run_timeouts_total{pipeline=\"daily\"} 1",
            "tenure_last_run_duration_seconds{pipeline=\"daily\"} 1.5",
            "tenure_rows_ingested_total{pipeline=\"daily\"} 1200",
            "tenure_last_success_timestamp_seconds{pipeline=\"daily\"} 1777600000",
            "tenure_run_in_progress{pipeline=\"daily\"} 0",
        ] {
            assert!(r.contains(line), "missing {line:?} in\n{r}");
        }

        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /healthz HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 405"));
        server.abort();
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
