//! The S3 path against a real S3-compatible server: `moto_server` (PyPI
//! `moto[server]`, installed by `.ci/run`) on 127.0.0.1. Raw objects are
//! uploaded with boto3, tenure ingests from `s3://` and publishes to `s3://`,
//! and the published tables are read back with the Python `deltalake` package.

use crate::common::{config_with, output_text, python, set, tenure, AS_OF};
use serde_json::Value;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "tenure-test-key";
const SECRET: &str = "tenure-test-secret-must-not-leak";

/// A moto server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server (pip install 'moto[server]')");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a boto3 snippet against the server (`s3` is the client).
    fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3, sys, json\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}', region_name='us-east-1')\n{code}\n",
            self.endpoint()
        );
        let out = Command::new(python()).args(["-c", &script]).output().expect("run python");
        assert!(out.status.success(), "boto3 snippet failed:\n{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn upload_dir(&self, bucket: &str, prefix: &str, dir: &Path) {
        let code = format!(
            "import os\nroot = {dir:?}\nfor base, _, files in os.walk(root):\n    for f in files:\n        p = os.path.join(base, f)\n        s3.upload_file(p, '{bucket}', '{prefix}/' + os.path.relpath(p, root))\n"
        );
        self.boto(&code);
    }

    /// Reads a Delta table on the server with the Python deltalake package.
    fn read_delta(&self, uri: &str) -> Value {
        let script = format!(
            "import json\nfrom deltalake import DeltaTable\nopts = {{'AWS_ENDPOINT_URL': '{}', 'AWS_ACCESS_KEY_ID': '{KEY}', 'AWS_SECRET_ACCESS_KEY': '{SECRET}', 'AWS_REGION': 'us-east-1', 'AWS_ALLOW_HTTP': 'true', 'aws_conditional_put': 'etag'}}\nt = DeltaTable('{uri}', storage_options=opts)\nrows = t.to_pyarrow_table().to_pylist()\nprint(json.dumps({{'version': t.version(), 'rows': rows}}, default=str))\nimport sys; sys.stdout.flush()\nimport os; os._exit(0)\n",
            self.endpoint()
        );
        let out = Command::new(python()).args(["-c", &script]).output().expect("run python");
        assert!(out.status.success(), "reading {uri} failed:\n{}", output_text(&out));
        serde_json::from_slice(&out.stdout).expect("json")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_config(dir: &Path, moto: &Moto) -> std::path::PathBuf {
    config_with(dir, |t| {
        set(t, &["storage", "endpoint"], toml::Value::String(moto.endpoint()));
        set(t, &["storage", "region"], toml::Value::String("us-east-1".into()));
        set(t, &["storage", "allow_http"], toml::Value::Boolean(true));
        set(t, &["storage", "options", "aws_access_key_id"], toml::Value::String("${TENURE_TEST_S3_KEY}".into()));
        set(t, &["storage", "options", "aws_secret_access_key"], toml::Value::String("${TENURE_TEST_S3_SECRET}".into()));
    })
}

fn run_s3(config: &Path, raw: &str, warehouse: &str) -> std::process::Output {
    run_s3_with(config, raw, warehouse, AS_OF, &[])
}

fn run_s3_with(config: &Path, raw: &str, warehouse: &str, as_of: &str, extra: &[&str]) -> std::process::Output {
    let args = [
        "run", "--config", &config.display().to_string(), "--raw", raw, "--warehouse", warehouse,
        "--as-of", as_of, "--timezone", "UTC",
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(args)
        .args(extra)
        .current_dir(crate::common::repo())
        .env("TENURE_TEST_S3_KEY", KEY)
        .env("TENURE_TEST_S3_SECRET", SECRET)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run tenure");
    let text = output_text(&out);
    assert!(!text.contains(SECRET), "the secret appeared in the output:\n{text}");
    out
}

#[test]
fn pipeline_runs_end_to_end_on_s3() {
    let moto = Moto::start();
    moto.boto("s3.create_bucket(Bucket='lake')");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = s3_config(dir.path(), &moto);
    moto.upload_dir("lake", "raw", &crate::common::fixture("reasons"));

    let out = run_s3(&config, "s3://lake/raw", "s3://lake/warehouse");
    assert!(out.status.success(), "tenure run on S3 failed:\n{}", output_text(&out));

    // The run report lives in the bucket and accounts for every row.
    let keys = moto.boto("print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket='lake', Prefix='warehouse/_runs/')['Contents']]))");
    let keys: Vec<String> = serde_json::from_str(keys.trim()).expect("keys");
    assert_eq!(keys.len(), 1, "one run report: {keys:?}");
    let report: Value = serde_json::from_str(&moto.boto(&format!(
        "print(s3.get_object(Bucket='lake', Key='{}')['Body'].read().decode())",
        keys[0]
    )))
    .expect("report json");
    let t = &report["ingest"]["totals"];
    assert_eq!(report["status"], "succeeded");
    let (read, acc, rej, dup) = (t["rows_read"].as_u64(), t["accepted"].as_u64(), t["rejected"].as_u64(), t["duplicates"].as_u64());
    assert_eq!(read.unwrap(), acc.unwrap() + rej.unwrap() + dup.unwrap(), "conservation: {t}");
    assert!(acc.unwrap() > 0 && rej.unwrap() > 0, "the fixture has good and bad rows: {t}");

    // An independent reader sees what the report says.
    let events = moto.read_delta("s3://lake/warehouse/events");
    assert_eq!(events["rows"].as_array().unwrap().len() as u64, acc.unwrap());
    let rejects = moto.read_delta("s3://lake/warehouse/rejects");
    assert_eq!(rejects["rows"].as_array().unwrap().len() as u64, rej.unwrap());
    let bridge = moto.read_delta("s3://lake/warehouse/marts/mrr_bridge_monthly");
    assert_eq!(bridge["version"], 0);

    // The run held the pipeline's lease in the bucket (conditional create,
    // then a conditional update to release it).
    let lease: Value = serde_json::from_str(&moto.boto(
        "print(s3.get_object(Bucket='lake', Key='warehouse/_tenure/leases/daily.json')['Body'].read().decode())",
    ))
    .expect("lease json");
    assert_eq!(lease["released"], true, "the lease is released after the run: {lease}");

    // A second run finds nothing new and ingests nothing twice.
    let out = run_s3(&config, "s3://lake/raw", "s3://lake/warehouse");
    assert!(out.status.success(), "second run failed:\n{}", output_text(&out));
    let events = moto.read_delta("s3://lake/warehouse/events");
    assert_eq!(events["rows"].as_array().unwrap().len() as u64, acc.unwrap(), "no double ingest");
}

/// Workers read `events` from the bucket with the storage settings of their
/// config: a distributed run on S3 publishes the marts of a run in one
/// process on local files.
#[test]
fn a_distributed_run_on_s3_reads_events_on_its_workers() {
    let base = crate::workers::baseline();
    let moto = Moto::start();
    moto.boto("s3.create_bucket(Bucket='lake')");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = s3_config(dir.path(), &moto);
    moto.upload_dir("lake", "raw", &base.raw);
    let env = [("TENURE_TEST_S3_KEY", KEY), ("TENURE_TEST_S3_SECRET", SECRET)];
    let workers: Vec<crate::workers::Worker> = (0..2).map(|_| crate::workers::Worker::start_with(None, Some(&config), &env)).collect();
    let urls = workers.iter().map(|w| w.url.clone()).collect::<Vec<_>>().join(",");
    let out = run_s3_with(&config, "s3://lake/raw", "s3://lake/warehouse", &base.as_of, &["--workers", &urls]);
    assert!(out.status.success(), "distributed run on S3 failed:\n{}", output_text(&out));
    let options = serde_json::json!({
        "AWS_ENDPOINT_URL": moto.endpoint(), "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
    });
    let tables = "mrr_bridge_monthly,customer_health,ndr_trailing_12m,churn_predictions,customer_clv";
    let compared = Command::new(python())
        .arg(crate::common::repo().join("tests/py/compare_marts.py"))
        .arg(&base.local)
        .arg("s3://lake/warehouse")
        .args(["--tables", tables, "--b-options", &options.to_string()])
        .output()
        .expect("run compare_marts.py");
    assert!(compared.status.success(), "compare_marts.py failed:\n{}", output_text(&compared));
    let compared: Value = serde_json::from_slice(&compared.stdout).expect("json");
    assert_eq!(compared["differences"], serde_json::json!([]), "S3 distributed run differs: {compared}");
    assert!(compared["tables"]["customer_health"].as_u64() > Some(100), "{compared}");
    let keys = moto.boto("print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket='lake', Prefix='warehouse/_runs/')['Contents']]))");
    let keys: Vec<String> = serde_json::from_str(keys.trim()).expect("keys");
    let report: Value = serde_json::from_str(&moto.boto(&format!("print(s3.get_object(Bucket='lake', Key='{}')['Body'].read().decode())", keys[0]))).expect("report");
    let tasks: Vec<u64> = report["engine"]["workers"].as_array().expect("engine.workers").iter().map(|w| w["tasks"].as_u64().unwrap_or(0)).collect();
    assert!(tasks.len() == 2 && tasks.iter().all(|t| *t > 0), "both workers ran tasks: {}", report["engine"]);
    assert!(report["engine"]["workers"].as_array().expect("workers").iter().all(|w| w.get("lost").is_none()), "{}", report["engine"]);
}

#[test]
fn s3_errors_name_the_url_and_hide_the_secret() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = s3_config(dir.path(), &moto);
    // A bucket that does not exist.
    let out = run_s3(&config, "s3://no-such-bucket/raw", "s3://no-such-bucket/warehouse");
    assert!(!out.status.success(), "a missing bucket must fail the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://no-such-bucket"), "the error names the URL:\n{err}");
    // A refused connection: point the config at a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let config = config_with(dir.path(), |t| {
        set(t, &["storage", "endpoint"], toml::Value::String(format!("http://127.0.0.1:{closed}")));
        set(t, &["storage", "allow_http"], toml::Value::Boolean(true));
        set(t, &["storage", "region"], toml::Value::String("us-east-1".into()));
        set(t, &["storage", "options", "aws_access_key_id"], toml::Value::String(KEY.into()));
        set(t, &["storage", "options", "aws_secret_access_key"], toml::Value::String("${TENURE_TEST_S3_SECRET}".into()));
        set(t, &["storage", "max_retries"], toml::Value::Integer(2));
        set(t, &["storage", "retry_timeout_seconds"], toml::Value::Float(2.0));
    });
    let started = Instant::now();
    let out = run_s3(&config, "s3://lake/raw", "s3://lake/warehouse");
    assert!(!out.status.success(), "a refused connection must fail the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://lake"), "the error names the URL:\n{err}");
    assert!(started.elapsed() < Duration::from_secs(120), "gave up in bounded time");
    let _ = tenure::<&str>(&[]);
}

/// A TCP proxy in front of the S3 server that breaks every `every`-th
/// connection it accepts: alternately closed at once, and closed when the
/// server's answer starts (the request landed, its answer is lost: what a
/// reset mid-transfer does to a conditional put).
struct FaultProxy {
    port: u16,
}

impl FaultProxy {
    fn start(target: u16, every: usize) -> FaultProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for (i, accepted) in listener.incoming().enumerate() {
                let Ok(client) = accepted else { continue };
                let fault = (i % every == every - 1).then_some(i / every % 2);
                if fault == Some(0) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else { continue };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_in, &mut server_out);
                    let _ = server_out.shutdown(Shutdown::Write);
                });
                let (mut server_in, mut client_out) = (server, client);
                std::thread::spawn(move || {
                    if fault.is_some() {
                        let mut first = [0u8; 1];
                        let _ = server_in.read(&mut first);
                        let _ = client_out.shutdown(Shutdown::Both);
                        let _ = server_in.shutdown(Shutdown::Both);
                        return;
                    }
                    let mut buf = [0u8; 64 * 1024];
                    while let Ok(n) = server_in.read(&mut buf) {
                        if n == 0 || client_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client_out.shutdown(Shutdown::Write);
                });
            }
        });
        FaultProxy { port }
    }
}

/// Through a link that breaks one connection in 4 (some before the
/// request, some after it landed, with its answer lost), a run succeeds and
/// publishes exactly what a run over a clean link publishes: retried
/// requests, settled commits and conditional writes read back.
#[test]
fn a_run_over_a_faulty_link_publishes_what_a_clean_run_does() {
    let moto = Moto::start();
    moto.boto("s3.create_bucket(Bucket='lake')");
    moto.upload_dir("lake", "raw", &crate::common::fixture("reasons"));
    let dir = tempfile::tempdir().expect("tempdir");
    let clean_config = s3_config(dir.path(), &moto);
    let out = run_s3(&clean_config, "s3://lake/raw", "s3://lake/clean");
    assert!(out.status.success(), "clean run failed:\n{}", output_text(&out));

    let proxy = FaultProxy::start(moto.port, 4);
    let faulty_dir = tempfile::tempdir().expect("tempdir");
    let faulty_config = config_with(faulty_dir.path(), |t| {
        set(t, &["storage", "endpoint"], toml::Value::String(format!("http://127.0.0.1:{}", proxy.port)));
        set(t, &["storage", "region"], toml::Value::String("us-east-1".into()));
        set(t, &["storage", "allow_http"], toml::Value::Boolean(true));
        set(t, &["storage", "options", "aws_access_key_id"], toml::Value::String("${TENURE_TEST_S3_KEY}".into()));
        set(t, &["storage", "options", "aws_secret_access_key"], toml::Value::String("${TENURE_TEST_S3_SECRET}".into()));
    });
    let out = run_s3(&faulty_config, "s3://lake/raw", "s3://lake/faulty");
    assert!(out.status.success(), "a run over a faulty link failed:\n{}", output_text(&out));

    let sorted = |uri: &str| {
        let mut rows: Vec<String> = moto.read_delta(uri)["rows"].as_array().expect("rows").iter().map(|r| r.to_string()).collect();
        rows.sort();
        rows
    };
    for table in ["events", "rejects", "marts/mrr_monthly", "marts/mrr_bridge_monthly", "marts/customer_health"] {
        let (clean, faulty) = (sorted(&format!("s3://lake/clean/{table}")), sorted(&format!("s3://lake/faulty/{table}")));
        let ignore_run = |rows: Vec<String>| -> Vec<String> {
            rows.into_iter()
                .map(|r| {
                    let mut v: Value = serde_json::from_str(&r).expect("row");
                    if let Some(o) = v.as_object_mut() {
                        o.remove("ingest_run_id");
                        o.remove("run_id");
                        o.remove("ingested_at");
                    }
                    v.to_string()
                })
                .collect::<std::collections::BTreeSet<String>>()
                .into_iter()
                .collect()
        };
        assert_eq!(ignore_run(clean), ignore_run(faulty), "{table} differs over the faulty link");
    }
}
