//! Distributed runs: `tenure worker` processes on 127.0.0.1 run the stages
//! of the models of `tenure run --workers`, and the run publishes exactly
//! the tables a run in one process publishes from the same raw data: every
//! mart, compared row by row and value by value by the Python reader. A
//! worker that dies mid-run costs a retry of the models it was running,
//! never the run.

use crate::common::{output_text, python, repo, tenure};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A `tenure worker` on a free port of 127.0.0.1.
pub(crate) struct Worker {
    child: Child,
    pub(crate) url: String,
}

impl Worker {
    /// Start one, with `TENURE_FAILPOINT` set to `failpoint` when given,
    /// and wait (bounded) for its `listening on ADDR`.
    fn start(failpoint: Option<&str>) -> Worker {
        Worker::start_with(failpoint, None, &[])
    }

    /// [`Worker::start`] with a config file and environment variables.
    pub(crate) fn start_with(failpoint: Option<&str>, config: Option<&Path>, env: &[(&str, &str)]) -> Worker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenure"));
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.envs(env.iter().copied());
        cmd.args(["worker", "--listen", "127.0.0.1:0"])
            .current_dir(repo())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match failpoint {
            Some(f) => cmd.env("TENURE_FAILPOINT", f),
            None => cmd.env_remove("TENURE_FAILPOINT"),
        };
        let mut child = cmd.spawn().expect("start tenure worker");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => {
                let port: u16 = addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
                assert!(addr.starts_with("127.0.0.1:") && port > 0, "listening on {addr:?}: a port of 127.0.0.1");
                Worker { child, url: format!("http://{addr}") }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("tenure worker did not print its address");
            }
        }
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tenure worker did not stop on SIGTERM");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo's raw data and a run of it in one process, shared by the tests.
pub(crate) struct Baseline {
    _dir: tempfile::TempDir,
    pub(crate) raw: PathBuf,
    pub(crate) local: PathBuf,
    pub(crate) as_of: String,
}

pub(crate) fn baseline() -> &'static Baseline {
    static BASELINE: OnceLock<Baseline> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let demo = dir.path().join("demo");
        let out = tenure(&["demo", "--dir", &demo.display().to_string(), "--customers", "120"]);
        assert!(out.status.success(), "tenure demo failed:\n{}", output_text(&out));
        let as_of = latest_report(&demo.join("warehouse"))["as_of"].as_str().expect("as_of").to_string();
        let local = dir.path().join("local");
        run(&demo.join("raw"), &local, &as_of, None);
        Baseline {
            raw: demo.join("raw"),
            local,
            as_of,
            _dir: dir,
        }
    })
}

/// `tenure run` of `raw` into `warehouse`, on `workers` when given; its report.
fn run(raw: &Path, warehouse: &Path, as_of: &str, workers: Option<&[&Worker]>) -> Value {
    let mut args: Vec<String> = vec!["run".into(), "--raw".into(), raw.display().to_string(), "--warehouse".into(), warehouse.display().to_string()];
    args.extend(["--as-of".into(), as_of.into(), "--timezone".into(), "UTC".into()]);
    if let Some(workers) = workers {
        args.extend(["--workers".into(), workers.iter().map(|w| w.url.clone()).collect::<Vec<_>>().join(",")]);
    }
    let out = tenure(&args);
    assert!(out.status.success(), "tenure run (workers {}) failed:\n{}", workers.is_some(), output_text(&out));
    latest_report(warehouse)
}

fn latest_report(warehouse: &Path) -> Value {
    let mut reports: Vec<PathBuf> = std::fs::read_dir(warehouse.join("_runs")).expect("runs").map(|e| e.expect("entry").path()).collect();
    reports.sort();
    let path = reports.pop().expect("a run report");
    serde_json::from_slice(&std::fs::read(path).expect("report")).expect("json")
}

/// Every mart of `warehouse` equals the one-process run's, value for value
/// (the closing run's id aside, which names each run).
fn assert_same_marts(warehouse: &Path) {
    let out = Command::new(python())
        .arg(repo().join("tests/py/compare_marts.py"))
        .arg(&baseline().local)
        .arg(warehouse)
        .args(["--ignore", "close_run_id"])
        .output()
        .expect("run compare_marts.py");
    assert!(out.status.success(), "compare_marts.py failed:\n{}", output_text(&out));
    let compared: Value = serde_json::from_slice(&out.stdout).expect("json");
    let tables = compared["tables"].as_object().expect("tables");
    assert!(tables.len() >= 21, "every mart compared: {tables:?}");
    assert!(tables["mrr_bridge_monthly"].as_u64() > Some(24), "{tables:?}");
    assert_eq!(compared["differences"], serde_json::json!([]), "distributed run differs from the one-process run");
}

/// The run report's `engine.workers`: (url, tasks, lost) per worker.
fn workers_of(report: &Value) -> Vec<(String, u64, bool)> {
    report["engine"]["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("engine.workers in the report: {}", report["engine"]))
        .iter()
        .map(|w| (w["url"].as_str().unwrap_or("").trim_end_matches('/').to_string(), w["tasks"].as_u64().unwrap_or(0), w["lost"] == true))
        .collect()
}

#[test]
fn a_run_on_two_workers_publishes_the_tables_of_a_run_in_one_process() {
    let base = baseline();
    let (a, b) = (Worker::start(None), Worker::start(None));
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("warehouse");
    let report = run(&base.raw, &warehouse, &base.as_of, Some(&[&a, &b]));
    assert_same_marts(&warehouse);
    let workers = workers_of(&report);
    assert_eq!(workers.iter().map(|w| w.0.clone()).collect::<Vec<_>>(), vec![a.url.clone(), b.url.clone()], "{workers:?}");
    assert!(workers.iter().all(|(_, tasks, lost)| *tasks > 0 && !lost), "both workers ran tasks: {workers:?}");
    assert_eq!(report["engine"]["retried_models"], serde_json::json!([]));
    // A run in one process says nothing of workers.
    assert!(latest_report(&base.local).get("engine").is_none());
    for worker in [a, b] {
        assert!(worker.terminate().success(), "a worker stops cleanly on SIGTERM");
    }
}

#[test]
fn a_worker_lost_mid_run_costs_a_retry_not_the_run() {
    let base = baseline();
    // The second worker aborts as its first task arrives, models running.
    let (a, b) = (Worker::start(None), Worker::start(Some("worker:task")));
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("warehouse");
    let report = run(&base.raw, &warehouse, &base.as_of, Some(&[&a, &b]));
    assert_same_marts(&warehouse);
    let workers = workers_of(&report);
    assert_eq!((workers[0].2, workers[1].2), (false, true), "the second worker is reported lost: {workers:?}");
    assert!(workers[0].1 > 0, "the first worker ran the rest: {workers:?}");
    let retried = report["engine"]["retried_models"].as_array().expect("retried_models");
    assert!(!retried.is_empty(), "the models it was running were built again: {}", report["engine"]);
}

#[test]
fn a_run_whose_workers_do_not_answer_runs_in_its_own_process() {
    let base = baseline();
    // Two ports nothing listens on.
    let closed: Vec<String> = (0..2)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", listener.local_addr().expect("addr"))
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("warehouse");
    let mut args: Vec<String> = vec!["run".into(), "--raw".into(), base.raw.display().to_string(), "--warehouse".into(), warehouse.display().to_string()];
    args.extend(["--as-of".into(), base.as_of.clone(), "--timezone".into(), "UTC".into(), "--workers".into(), closed.join(",")]);
    let out = tenure(&args);
    assert!(out.status.success(), "tenure run failed:\n{}", output_text(&out));
    assert_same_marts(&warehouse);
    let report = latest_report(&warehouse);
    let workers = workers_of(&report);
    assert_eq!(workers, closed.iter().map(|u| (u.clone(), 0, true)).collect::<Vec<_>>(), "both lost, no task sent");
}

#[test]
fn worker_urls_are_checked() {
    let out = tenure(&["run", "--workers", "s3://bucket:1", "--as-of", "2026-01-31"]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("is not a worker URL"), "{}", output_text(&out));
}
