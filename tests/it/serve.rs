//! `tenure serve` from the outside: the binary serving a warehouse made by a
//! run over a small fixture (`tests/fixtures/serve/raw`), queried by real
//! clients: `psql`, Python `psycopg` 3 and a hand-made SCRAM login
//! (`tests/py/serve_client.py`), and a raw socket for what no polite client
//! does. Each test starts its own server on a free port of 127.0.0.1.
//!
//! Needs `psql` (Debian `postgresql-client`) and `psycopg` (`.ci/run`
//! installs both).

use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery staple";

/// The fixture's values, by hand: c1 starts at 100.50 on 2026-01-10, c2 at
/// 40 on 2026-01-15 and changes to 60 on 2026-02-10, c3 starts at 25.25 on
/// 2026-02-03 and cancels on 2026-03-05 (five events, all valid).
const EVENTS: &str = "5";

/// A project whose warehouse holds one run (as of `AS_OF`) over the fixture.
fn published() -> Project {
    let p = Project::with_prefix("serve");
    copy_tree(&repo().join("tests/fixtures/serve/raw"), &p.raw);
    p.run();
    p
}

/// A running `tenure serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Arrow Flight SQL's address, when started with it.
    flight: Option<SocketAddr>,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `tenure serve` on a free port with `config` (or the repository's)
    /// and waits (bounded) until it listens. Its log (debug level) goes to a
    /// file beside the warehouse.
    fn start(project: &Project, config: Option<&Path>, password: Option<&str>) -> Server {
        Server::start_with(project, config, password, false)
    }

    /// [`Server::start`] with Arrow Flight SQL on a free port too.
    fn start_flight(project: &Project, config: Option<&Path>, password: Option<&str>) -> Server {
        Server::start_with(project, config, password, true)
    }

    fn start_with(project: &Project, config: Option<&Path>, password: Option<&str>, flight: bool) -> Server {
        let log = project.dir.path().join(format!("serve-{}.log", fastrand_suffix()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenure"));
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("serve")
            .arg("--warehouse")
            .arg(&project.warehouse)
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(repo())
            .env("NO_COLOR", "1")
            .env("TENURE_LOG", "warn,tenure=debug")
            .env_remove("TENURE_SERVER_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if flight {
            cmd.args(["--flight-listen", "127.0.0.1:0"]);
        }
        if let Some(pw) = password {
            cmd.env("TENURE_SERVER_PASSWORD", pw);
        }
        let mut child = cmd.spawn().expect("start tenure serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut pg, mut fl, mut sent) = (None, None, false);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    pg = Some(addr.trim().to_string());
                } else if let Some(addr) = line.strip_prefix("flight sql listening on ") {
                    fl = Some(addr.trim().to_string());
                }
                if let Some(addr) = pg.clone().filter(|_| !sent && (!flight || fl.is_some())) {
                    sent = tx.send((addr, fl.clone())).is_ok();
                }
            }
        });
        let parse = |addr: &str| -> SocketAddr { addr.parse().unwrap_or_else(|e| panic!("listening on {addr:?}: {e}")) };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((addr, flight)) => Server {
                child,
                addr: parse(&addr),
                flight: flight.as_deref().map(parse),
                log,
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tenure serve did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most `secs`) for the log to contain `needle`.
    fn wait_for_log(&self, needle: &str, secs: u64) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server log never said {needle:?}:\n{}", self.log());
    }

    /// Runs `psql` with `commands` (each one `-c`), unaligned, tuples only.
    fn psql(&self, extra: &str, password: Option<&str>, commands: &[&str]) -> Output {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=tenure dbname=tenure connect_timeout=10 {extra}",
            self.addr.port()
        );
        let mut cmd = Command::new("psql");
        cmd.arg(conninfo).args([
            "-X",
            "-q",
            "-w",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "\\set VERBOSITY verbose",
        ]);
        for c in commands {
            cmd.args(["-c", c]);
        }
        for var in [
            "PGUSER",
            "PGDATABASE",
            "PGHOST",
            "PGPORT",
            "PGSSLMODE",
            "PGPASSFILE",
            "PGSERVICE",
        ] {
            cmd.env_remove(var);
        }
        match password {
            Some(pw) => cmd.env("PGPASSWORD", pw),
            None => cmd.env_remove("PGPASSWORD"),
        };
        bounded(cmd, 60)
    }

    /// `psql` with the password that must succeed; returns stdout.
    fn query(&self, commands: &[&str]) -> String {
        let out = self.psql("", Some(PASSWORD), commands);
        assert!(
            out.status.success(),
            "psql {commands:?} failed:\n{}\n--- server log\n{}",
            output_text(&out),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `psql` running one statement that must fail with `sqlstate`.
    fn refused(&self, sql: &str, sqlstate: &str) {
        let out = self.psql("", Some(PASSWORD), &[sql]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sql} was accepted:\n{}", output_text(&out));
        assert!(
            err.contains(&format!("ERROR:  {sqlstate}:")),
            "{sql} should fail with SQLSTATE {sqlstate}:\n{err}"
        );
    }
}

/// A distinct suffix for the log file of each server of a test.
fn fastrand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

/// Runs `cmd` to completion, killing it (and failing) after `secs`.
fn bounded(mut cmd: Command, secs: u64) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.unwrap_or_else(|e| panic!("run {cmd:?}: {e}")),
        Err(_) => {
            // Our own child, by its id.
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("{cmd:?} did not finish within {secs} s");
        }
    }
}

fn python_client(args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/py/serve_client.py")).args(args);
    let out = bounded(cmd, 60);
    assert!(
        out.status.success(),
        "serve_client.py {args:?} failed:\n{}",
        output_text(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("serve_client.py printed no JSON ({e}):\n{}", output_text(&out)))
}

#[test]
fn psql_and_psycopg_query_and_describe_the_published_tables() {
    let p = published();
    let server = Server::start(&p, None, Some(PASSWORD));

    let feb = server
        .query(&["select customer_id, mrr from mrr_monthly where month = date '2026-02-01' order by customer_id"]);
    assert_eq!(feb, "c1|100.5000\nc2|60.0000\nc3|25.2500");

    // What psql's \d commands and BI tools ask pg_catalog.
    let tables = server.query(&["\\dt"]);
    for t in ["mrr_monthly", "mrr_bridge_monthly", "events", "rejects", "reported_mrr_bridge_monthly", "restatements"] {
        assert!(tables.contains(&format!("|{t}|")), "\\dt should list {t}:\n{tables}");
    }
    // The month close: January and February closed as of March 31.
    let closed = server.query(&[
        "select month, end_mrr, close_version from reported_mrr_bridge_monthly where segment = 'all' order by month",
    ]);
    assert_eq!(closed, "2026-01-01|140.5000|1\n2026-02-01|185.7500|1");
    assert_eq!(server.query(&["select count(*) from restatements"]), "0");
    let described = server.query(&["\\d mrr_monthly"]);
    for line in ["month|date", "customer_id|text", "mrr|numeric"] {
        assert!(
            described.contains(line),
            "\\d mrr_monthly should show {line:?}:\n{described}"
        );
    }
    let columns = server.query(&[
        "select column_name from information_schema.columns where table_name = 'mrr_monthly' order by ordinal_position",
    ]);
    assert!(columns.starts_with("month\ncustomer_id\nsegment\nmrr"), "{columns}");

    // SQLAlchemy (Superset) parses the server version from version().
    assert!(server.query(&["select version()"]).starts_with("PostgreSQL 16."));

    // What drivers and BI tools send on connect.
    let settings = server.query(&[
        "set application_name = 'metabase'",
        "set extra_float_digits = 3",
        "set client_min_messages to warning",
        "set time zone 'UTC'",
        "show search_path",
        "begin",
        "select count(*) from events",
        "declare c cursor for select event_id from events order by event_id",
        "fetch 2 from c",
        "close c",
        "commit",
    ]);
    assert_eq!(settings, format!("public\n{EVENTS}\ne1\ne2"));

    // psycopg 3: the extended protocol, parameters of several types, Decimal/date/NULL.
    let r = python_client(&["psycopg", &server.addr.port().to_string(), PASSWORD]);
    let oids: Vec<i64> = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_i64().unwrap())
        .collect();
    // numeric, date, timestamptz, int8, text
    assert_eq!(oids, vec![1700, 1082, 1184, 20, 25], "type OIDs of {}", r["columns"]);
    assert_eq!(
        r["event"],
        serde_json::json!([
            ["Decimal", "100.5000"],
            ["date", "2026-01-10"],
            ["datetime", "2026-01-10 10:00:00+00:00"],
            ["None", null],
            ["None", null]
        ])
    );
    assert_eq!(
        r["c2"],
        serde_json::json!([
            [["date", "2026-02-01"], ["Decimal", "60.0000"]],
            [["date", "2026-03-01"], ["Decimal", "60.0000"]]
        ])
    );
    // c1 in January, February, March and c2 in February, March.
    assert_eq!(r["over_50_25"], 5);
    assert_eq!(r["literals"], serde_json::json!([["bool", "True"], ["None", null]]));
    assert_eq!(r["insert"], "25006");
    assert_eq!(r["after_refusal"], 5);
    // Cursors are for the simple protocol; psycopg's named ones get a clear error.
    assert_eq!(r["named_cursor"], "0A000");

    // Many clients at once.
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let sql =
                format!("select count(*) + {i} from events e join mrr_monthly m on e.customer_id = m.customer_id");
            let port = server.addr.port();
            std::thread::spawn(move || {
                let mut cmd = Command::new("psql");
                cmd.arg(format!(
                    "host=127.0.0.1 port={port} user=tenure dbname=tenure connect_timeout=10"
                ))
                .args(["-X", "-A", "-t", "-c", &sql])
                .env("PGPASSWORD", PASSWORD);
                bounded(cmd, 60)
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let out = c.join().expect("client thread");
        assert!(out.status.success(), "client {i}:\n{}", output_text(&out));
        // 8 monthly rows, joined with each customer's events: c1 3×1, c2 3×2, c3 2×2.
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            (13 + i).to_string(),
            "client {i}"
        );
    }
}

/// SQLAlchemy's inspector and reflection over psycopg2 and psycopg 3, as
/// Superset uses them to list and add datasets.
#[test]
fn sqlalchemy_inspects_and_reflects_the_published_tables() {
    let p = published();
    let server = Server::start(&p, None, Some(PASSWORD));
    // psycopg2 sends literal SQL; psycopg 3 binds parameters over the
    // extended protocol, some of them in catalog calls tenure rewrites.
    for driver in ["psycopg2", "psycopg"] {
        let r = python_client(&["sqlalchemy", &server.addr.port().to_string(), PASSWORD, driver]);
        assert_eq!(r["schemas"], serde_json::json!(["public"]));
        let tables: Vec<&str> = r["tables"].as_array().expect("tables").iter().filter_map(|t| t.as_str()).collect();
        for t in ["mrr_monthly", "mrr_bridge_monthly", "finance_kpis_monthly", "events", "rejects", "restatements"] {
            assert!(tables.contains(&t), "{driver}: get_table_names lacks {t}: {tables:?}");
        }
        assert_eq!(r["views"], serde_json::json!([]));
        let columns = r["columns"].as_array().expect("columns");
        assert_eq!(columns.len(), 17, "{driver}: {columns:?}");
        assert_eq!(columns[0], serde_json::json!(["month", "DATE", true]));
        assert_eq!(columns[2], serde_json::json!(["start_mrr", "NUMERIC", false]));
        assert_eq!(columns[9], serde_json::json!(["start_customers", "BIGINT", false]));
        assert_eq!(columns[14], serde_json::json!(["ndr", "DOUBLE PRECISION", true]));
        for (call, empty) in [("pk", "[]"), ("foreign_keys", "[]"), ("indexes", "[]"), ("unique", "[]")] {
            assert_eq!(r[call].to_string(), empty, "{driver} {call}");
        }
        assert_eq!(r["has_table"], true);
        // Table comments are the SQL headers.
        let comment = r["comment"].as_str().unwrap_or_default();
        assert!(comment.starts_with("mrr_bridge_monthly: the MRR bridge") && comment.contains("grain:"), "{comment}");
        assert!(!comment.contains("column "), "column lines are not the table's comment: {comment}");
        // Column comments are the header's `-- column` lines, on every column.
        let columns = r["column_comments"].as_object().expect("column comments");
        assert_eq!(columns.len(), 17);
        assert!(columns.values().all(|c| c.as_str().is_some_and(|c| !c.is_empty())), "{driver}: {columns:?}");
        assert!(columns["start_mrr"].as_str().unwrap_or_default().starts_with("Sum of the customers' MRR"), "{columns:?}");
        assert_eq!(
            r["reflected"],
            serde_json::json!(["month", "customer_id", "segment", "mrr", "prev_mrr", "movement", "movement_amount"])
        );
        assert_eq!(
            r["c2"],
            serde_json::json!([
                [["date", "2026-01-01"], ["Decimal", "40.0000"]],
                [["date", "2026-02-01"], ["Decimal", "60.0000"]],
                [["date", "2026-03-01"], ["Decimal", "60.0000"]]
            ])
        );
        assert_eq!(r["database"], "tenure");
    }

    // What the inspector's queries rest on, over psql too.
    let escaped = server.query(&["select 'a_b' like 'a/_b' escape '/', 'axb' like 'a/_b' escape '/', 'a/b' like 'a//b' escape '/'"]);
    assert_eq!(escaped, "t|f|t");
    let schemas = server.query(&["select nspname from pg_namespace where nspname not like 'pg/_%' escape '/' order by 1"]);
    assert!(schemas.lines().any(|l| l == "public") && !schemas.contains("pg_catalog"), "{schemas}");
    assert_eq!(server.query(&["select pg_get_serial_sequence('mrr_monthly', 'mrr') is null, current_database()"]), "t|tenure");
    let databases = server.query(&["select datname from pg_database order by 1"]);
    assert_eq!(databases, "postgres\ntenure", "the database clients see is tenure");
    let catalogs = server.query(&["select distinct table_catalog from information_schema.tables"]);
    assert_eq!(catalogs, "tenure");
    let described = server.query(&["select obj_description(c.oid, 'pg_class') from pg_class c where c.relname = 'finance_kpis_monthly'"]);
    assert!(described.starts_with("finance_kpis_monthly: the subscription-analytics KPIs"), "{described}");
    let column = server.query(&[
        "select col_description(c.oid, 3), col_description(c.oid, 1) from pg_class c where c.relname = 'mrr_bridge_monthly'",
    ]);
    assert!(column.starts_with("Sum of the customers' MRR") && column.contains("|First day of the covered month"), "{column}");
    let close = server.query(&[
        "select a.attname, col_description(c.oid, a.attnum) from pg_class c join pg_attribute a on a.attrelid = c.oid \
         where c.relname = 'reported_mrr_bridge_monthly' and a.attname in ('end_mrr', 'close_version') order by 1",
    ]);
    assert!(close.starts_with("close_version|1 for the month's first close") && close.contains("\nend_mrr|Sum of MRR at the cutoff"), "{close}");
    let listed = server.query(&["\\dt+ restatements"]);
    assert!(listed.contains("restatements: each cell of a closed month"), "{listed}");
}

#[test]
fn writes_file_reads_and_bad_logins_are_refused_and_the_server_keeps_serving() {
    let p = published();
    let server = Server::start(&p, None, Some(PASSWORD));

    for (sql, sqlstate) in [
        ("create table t (a int)", "25006"),
        ("create table t as select * from events", "25006"),
        ("create view v as select 1", "25006"),
        ("insert into events (event_id) values ('x')", "25006"),
        ("update events set plan = 'x'", "25006"),
        ("delete from events", "25006"),
        ("drop table mrr_monthly", "25006"),
        ("copy mrr_monthly to '/tmp/tenure-serve-copy.csv'", "25006"),
        ("copy events from '/etc/hostname'", "25006"),
        ("prepare p as select 1", "25006"),
        ("set datafusion.catalog.information_schema = false", "42501"),
        ("select * from '/etc/hostname'", "42P01"),
        ("select * from 'file:///etc/hostname'", "42P01"),
        ("select pg_read_file('/etc/hostname')", "42883"),
        ("select * from read_csv('/etc/hostname')", "42883"),
    ] {
        server.refused(sql, sqlstate);
    }
    // DataFusion's own syntax for reading files does not even parse here.
    let out = server.psql(
        "",
        Some(PASSWORD),
        &["create external table x stored as csv location '/etc/hostname'"],
    );
    assert!(
        !out.status.success(),
        "create external table was accepted:\n{}",
        output_text(&out)
    );
    assert!(!Path::new("/tmp/tenure-serve-copy.csv").exists());
    assert_eq!(server.query(&["select count(*) from events"]), EVENTS);

    // A wrong password and an unknown user get the same answer: 28P01.
    let port = server.addr.port().to_string();
    assert_eq!(python_client(&["scram", &port, "tenure", "wrong"])["code"], "28P01");
    assert_eq!(python_client(&["scram", &port, "mallory", PASSWORD])["code"], "28P01");
    assert_eq!(python_client(&["scram", &port, "tenure", PASSWORD])["ready"], true);
    let out = server.psql("", Some("wrong"), &["select 1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("assword authentication failed for user \"tenure\""),
        "{}",
        output_text(&out)
    );
    let out = server.psql("", None, &["select 1"]);
    assert!(
        !out.status.success(),
        "no password was accepted:\n{}",
        output_text(&out)
    );

    // Regression: after a failed login pgwire leaves the connection "ready
    // for query"; a client that ignores the error must still not run SQL.
    // (The server closes the connection after a FATAL error, as PostgreSQL
    // does; the policy refuses statements of unauthenticated clients besides.)
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let params = b"user\0tenure\0database\0tenure\0\0";
    let mut startup = ((params.len() + 8) as i32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196608i32.to_be_bytes());
    startup.extend_from_slice(params);
    s.write_all(&startup).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(buf[0], b'R', "expected an authentication request: {:?}", &buf[..n]);
    let body = b"BOGUS\0\x00\x00\x00\x03abc";
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(body);
    s.write_all(&msg).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert_eq!(buf[0], b'E', "expected an error: {:?}", &buf[..n]);
    let q = b"select count(*) from events\0";
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((q.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(q);
    let _ = s.write_all(&msg);
    let mut rest = Vec::new();
    let end = s.read_to_end(&mut rest);
    assert!(
        !rest.contains(&b'D'),
        "rows were sent to an unauthenticated client: {rest:?}"
    );
    assert!(
        !matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the connection stayed open after a failed login"
    );
    server.wait_for_log("Unsupported SASL authentication method BOGUS", 10);

    assert_eq!(server.query(&["select count(*) from events"]), EVENTS);
    assert!(
        !server.log().contains(PASSWORD),
        "the password appears in the server log"
    );
}

/// pgjdbc's `DatabaseMetaData` (DBeaver, DataGrip, Metabase browse with it)
/// and a prepared statement, run by tests/java/JdbcMetadata.java with the
/// Debian pgjdbc jar.
#[test]
fn pgjdbc_browses_the_published_tables_with_database_metadata() {
    let p = published();
    let server = Server::start(&p, None, Some(PASSWORD));
    let mut cmd = Command::new("java");
    cmd.args(["-cp", "/usr/share/java/postgresql.jar"])
        .arg(repo().join("tests/java/JdbcMetadata.java"))
        .args([&server.addr.port().to_string(), PASSWORD]);
    let out = bounded(cmd, 180);
    assert!(out.status.success(), "JdbcMetadata.java failed:\n{}\n--- server log\n{}", output_text(&out), server.log());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let answers: std::collections::HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    let answer = |key: &str| *answers.get(key).unwrap_or_else(|| panic!("no {key} in:\n{text}"));
    assert!(answer("product").starts_with("PostgreSQL 16"), "{text}");
    assert_eq!((answer("catalog"), answer("catalogs")), ("tenure", "[tenure]"));
    assert!(answer("schemas").contains("public"), "{text}");
    for t in ["mrr_bridge_monthly", "finance_kpis_monthly", "restatements", "reported_mrr_bridge_monthly", "events"] {
        assert!(answer("tables").contains(&format!(" {t},")) || answer("tables").contains(&format!("[{t},")), "{t} not in {}", answer("tables"));
    }
    assert!(answer("remarks").starts_with("[mrr_bridge_monthly: the MRR bridge"), "{text}");
    assert!(
        answer("columns").starts_with("[month|date|91|1, segment|text|12|2, start_mrr|numeric|2|3,"),
        "JDBC types and positions: {}",
        answer("columns")
    );
    for key in ["primary_keys", "imported_keys", "indexes"] {
        assert_eq!(answer(key), "[]", "{key}");
    }
    let february = server.query(&["select end_mrr, start_customers from mrr_bridge_monthly where segment = 'all' and month = date '2026-02-01'"]);
    assert_eq!(answer("february"), format!("{february}|numeric"), "a bound string and date, a BigDecimal back");
    assert_eq!(answer("ddl"), "25006");
}

/// The catalog queries Grafana and Metabase send when they list tables and
/// columns (tests/fixtures/serve/catalog_queries), over psql: they plan, and
/// answer what the tools need to show the published tables.
#[test]
fn grafana_and_metabase_catalog_queries_list_the_published_tables() {
    let p = published();
    let server = Server::start(&p, None, Some(PASSWORD));
    let run = |name: &str| -> String {
        let sql = std::fs::read_to_string(repo().join(format!("tests/fixtures/serve/catalog_queries/{name}.sql"))).expect(name);
        server.query(&[&sql])
    };
    let tables = run("grafana_tables");
    assert!(tables.lines().any(|l| l.ends_with("mrr_bridge_monthly")), "{tables}");
    assert!(!tables.contains("pg_class") && !tables.contains("information_schema"), "{tables}");
    // Grafana picks time and value columns by their PostgreSQL type names.
    let columns = run("grafana_columns");
    let lines: Vec<&str> = columns.lines().collect();
    assert_eq!(lines.len(), 17, "{columns}");
    for expected in ["month|date", "segment|text", "start_mrr|numeric", "start_customers|bigint", "ndr|double precision"] {
        assert!(lines.contains(&expected), "{expected} is not in:\n{columns}");
    }
    assert_eq!(lines[0], "month|date", "columns are in table order");
    assert!(run("metabase_schemas").lines().any(|l| l == "public|tenure"));
    // Reading is the only privilege: Metabase offers no writes.
    let privileges = run("metabase_privileges");
    assert!(privileges.lines().any(|l| l == "|public|mrr_monthly|f|t|f|f"), "{privileges}");
    assert!(!privileges.lines().any(|l| l.contains("|t|t|")), "{privileges}");
    // Each table with its description (Metabase shows it beside the table).
    let described = run("metabase_tables");
    assert!(
        described.lines().any(|l| l.starts_with("public|mrr_bridge_monthly|TABLE|mrr_bridge_monthly: the MRR bridge")),
        "{described}"
    );
    assert!(described.lines().any(|l| l.starts_with("public|restatements|TABLE|restatements: ")), "{described}");
}

/// ADBC's Flight SQL driver, as pandas and Polars use it, against
/// `--flight-listen`: the rows psql sees, in Arrow types (exact decimals),
/// the catalog calls, a bound parameter, and the same refusals as pgwire.
#[test]
fn adbc_reads_the_published_tables_over_flight_sql() {
    let p = published();
    let server = Server::start_flight(&p, None, Some(PASSWORD));
    let port = server.flight.expect("flight address").port().to_string();
    let r = python_client(&["adbc", &port, PASSWORD]);

    let wrong = r["wrong_password"].as_str().unwrap_or_default();
    assert!(wrong.contains("UNAUTHENTICATED") && wrong.contains("28P01"), "{wrong}");
    assert_eq!(
        r["schema"],
        serde_json::json!([
            ["month", "date32[day]"],
            ["segment", "string"],
            ["start_mrr", "decimal128(38, 4)"],
            ["end_mrr", "decimal128(38, 4)"],
            ["ndr", "double"],
            ["start_customers", "int64"]
        ])
    );
    let over_pgwire = server.query(&[
        "select month, segment, start_mrr, end_mrr, start_customers from mrr_bridge_monthly order by month, segment",
    ]);
    let over_flight: Vec<&str> = r["rows"].as_array().expect("rows").iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(over_flight.join("\n"), over_pgwire, "Flight SQL and pgwire return the same rows");
    assert!(over_pgwire.contains("2026-02-01|all|140.5000|185.7500|"), "{over_pgwire}");

    let count = |month: &str| -> u64 {
        let n = server.query(&[&format!("select count(*) from mrr_monthly where month = date '{month}'")]);
        n.parse().unwrap_or_else(|e| panic!("{n}: {e}"))
    };
    assert_eq!(r["counts"], serde_json::json!([count("2026-01-01"), count("2026-02-01")]));
    assert_ne!(r["counts"][0], r["counts"][1], "the two bindings must differ for the test to tell them apart");

    for (call, code, grpc) in [("ddl", "25006", "UNAUTHORIZED"), ("copy", "25006", "UNAUTHORIZED"), ("unknown", "42P01", "NOT_FOUND")] {
        let e = r[call].as_str().unwrap_or_default();
        assert!(e.contains(code) && e.contains(grpc), "{call}: {e}");
    }
    assert_eq!(r["catalogs"], serde_json::json!(["tenure"]));
    assert_eq!(r["schemas"], serde_json::json!(["public"]));
    let tables: Vec<&str> = r["tables"].as_array().expect("tables").iter().filter_map(|t| t.as_str()).collect();
    let mut expected: Vec<&str> = crate::incremental::MARTS.to_vec();
    expected.extend(["events", "rejects", "restatements"]);
    for t in expected {
        assert!(tables.contains(&t), "GetTables lacks {t}: {tables:?}");
    }
    assert_eq!(
        r["finance_kpis_monthly"],
        serde_json::json!([["month", "date32[day]"], ["segment", "string"], ["is_complete", "bool"], ["net_new_mrr", "decimal128(38, 4)"]])
    );
    assert_eq!(r["table_types"], serde_json::json!(["TABLE"]));
    assert_eq!(r["vendor"], "tenure");
    // Without a valid bearer token nothing is answered, and a hand-made
    // ticket is judged like a query.
    assert_eq!(
        r["raw"],
        serde_json::json!({
            "no_token": "FlightUnauthenticatedError",
            "empty_token": "FlightUnauthenticatedError",
            "forged_token": "FlightUnauthenticatedError",
            "token": "accepted",
            "ddl_ticket": "FlightUnauthorizedError"
        })
    );
    assert!(!server.log().contains(PASSWORD), "the password appears in the server log");
}

#[test]
fn tls_is_required_when_a_certificate_is_configured() {
    let p = published();
    let certs = repo().join("tests/fixtures/serve");
    let config = config_with(p.dir.path(), |t| {
        set(
            t,
            &["server", "tls_cert"],
            toml::Value::String(certs.join("server.crt").display().to_string()),
        );
        set(
            t,
            &["server", "tls_key"],
            toml::Value::String(certs.join("server.key").display().to_string()),
        );
    });
    let server = Server::start_flight(&p, Some(&config), Some(PASSWORD));
    let root = certs.join("server.crt").display().to_string();
    // Flight SQL speaks TLS with the same certificate, and only TLS.
    let port = server.flight.expect("flight address").port().to_string();
    let r = python_client(&["adbc-tls", &port, PASSWORD, &root]);
    assert_eq!(r["count"].to_string(), EVENTS, "{r}");
    assert_ne!(r["plain"], "accepted", "a plain Flight SQL connection was accepted");
    let out = server.psql(
        &format!("sslmode=verify-full sslrootcert={root}"),
        Some(PASSWORD),
        &["\\conninfo", "select count(*) from events"],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SSL connection") && text.trim_end().ends_with(EVENTS),
        "{text}"
    );
    let out = server.psql("sslmode=disable", Some(PASSWORD), &["select 1"]);
    assert!(
        !out.status.success(),
        "a plain connection was accepted:\n{}",
        output_text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires TLS"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn new_runs_are_served_without_a_restart_and_earlier_versions_by_name() {
    let p = published();
    let server = Server::start(&p, None, Some(PASSWORD));
    let c4 = "select count(*) from mrr_monthly where customer_id = 'c4'";
    assert_eq!(server.query(&[c4]), "0");

    copy_tree(&repo().join("tests/fixtures/serve/later"), &p.raw);
    p.run();
    let start = Instant::now();
    while server.query(&[c4]) != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the new version was not served:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Time travel: the version before the second run, by name.
    assert_eq!(
        server.query(&["select count(*) from \"mrr_monthly@v0\" where customer_id = 'c4'"]),
        "0"
    );
    assert_eq!(
        server.query(&["select count(*) from \"mrr_monthly@v1\" where customer_id = 'c4'"]),
        "1"
    );
    assert_eq!(server.query(&["select count(*) from \"events@v1\""]), EVENTS);
    // By time: far in the future is the latest; before the first run, nothing.
    assert_eq!(
        server.query(&["select count(*) from \"mrr_monthly@2999-01-01\" where customer_id = 'c4'"]),
        "1"
    );
    let out = server.psql("", Some(PASSWORD), &["select * from \"events@2000-01-01T00:00:00Z\""]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not exist yet"),
        "{}",
        output_text(&out)
    );
    let out = server.psql("", Some(PASSWORD), &["select * from \"mrr_monthly@v7\""]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no version 7; its versions are 0 to 1"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn queries_stop_on_timeout_row_limit_and_disconnect() {
    let p = published();
    let config = config_with(p.dir.path(), |t| {
        set(t, &["server", "max_rows"], toml::Value::Integer(3));
        set(t, &["server", "query_timeout_seconds"], toml::Value::Integer(60));
    });
    let server = Server::start(&p, Some(&config), Some(PASSWORD));
    let endless = "select count(*) from generate_series(1, 1000000000000)";

    server.refused("select * from events", "54000");
    assert_eq!(
        server.query(&["select event_id from events order by event_id limit 3"]),
        "e1\ne2\ne3"
    );

    let start = Instant::now();
    let out = server.psql("", Some(PASSWORD), &["set statement_timeout = '500ms'", endless]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ERROR:  57014:"),
        "{}",
        output_text(&out)
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the timeout took {:?}",
        start.elapsed()
    );

    // A client that goes away mid-query: its query stops.
    let mut cmd = Command::new("psql");
    cmd.arg(format!(
        "host=127.0.0.1 port={} user=tenure dbname=tenure",
        server.addr.port()
    ))
    .args(["-X", "-c", endless])
    .env("PGPASSWORD", PASSWORD)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut client = cmd.spawn().expect("psql");
    std::thread::sleep(Duration::from_millis(700));
    client.kill().expect("kill our psql");
    let _ = client.wait();
    server.wait_for_log("the client disconnected", 10);
    assert_eq!(server.query(&["select count(*) from events"]), EVENTS);
}

#[test]
fn serve_refuses_unsafe_or_incomplete_settings() {
    let p = published();
    let open = config_with(p.dir.path(), |t| {
        set(t, &["server", "auth"], toml::Value::String("none".into()))
    });
    let wh = p.warehouse.display().to_string();
    let cfg = open.display().to_string();

    let out = tenure(&["--config", &cfg, "serve", "--warehouse", &wh, "--listen", "0.0.0.0:0"]);
    assert!(
        !out.status.success(),
        "auth = none served the network:\n{}",
        output_text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        output_text(&out)
    );

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenure"));
    cmd.args(["serve", "--warehouse", &wh, "--listen", "127.0.0.1:0"])
        .current_dir(repo())
        .env_remove("TENURE_SERVER_PASSWORD");
    let out = bounded(cmd, 60);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TENURE_SERVER_PASSWORD"),
        "{}",
        output_text(&out)
    );

    // auth = "none" on a loopback address: a local demo, no password asked.
    let server = Server::start(&p, Some(&open), None);
    let out = server.psql("", None, &["select count(*) from events"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), EVENTS);
}

/// A raw connection that sends `bytes` (if any) and then nothing more.
fn idle_socket(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    if !bytes.is_empty() {
        s.write_all(bytes).expect("write");
    }
    s
}

/// PostgreSQL's SSLRequest: what libpq sends first by default (sslmode=prefer).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A startup message for user tenure, database tenure.
fn startup_message() -> Vec<u8> {
    let params = b"user\0tenure\0database\0tenure\0\0";
    let mut startup = ((params.len() + 8) as i32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196608i32.to_be_bytes());
    startup.extend_from_slice(params);
    startup
}

/// Whether the server closed `s` (EOF or reset) within `secs`, after
/// whatever it sent first; what it sent.
fn closed_within(s: &mut TcpStream, secs: f64) -> (bool, Vec<u8>) {
    s.set_read_timeout(Some(Duration::from_secs_f64(secs))).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (true, got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (false, got)
            }
            Err(_) => return (true, got),
        }
    }
}

/// Regression (issue 28): 64 sockets that never logged in took every
/// `max_connections` place and locked every user out ("server sent an error
/// response during SSL exchange"). Only logged-in clients count; logins in
/// progress have a bound of their own that closes the oldest.
#[test]
fn idle_sockets_that_never_log_in_do_not_lock_users_out() {
    let p = published();
    let config = config_with(p.dir.path(), |t| {
        set(t, &["server", "max_connections"], toml::Value::Integer(2));
        // No deadline: the sockets stay for as long as the test holds them.
        set(t, &["server", "login_timeout_seconds"], toml::Value::Integer(0));
    });
    let server = Server::start(&p, Some(&config), Some(PASSWORD));
    let startup = startup_message();
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|i| match i % 3 {
            0 => idle_socket(server.addr, &[]),
            1 => idle_socket(server.addr, &SSL_REQUEST),
            _ => idle_socket(server.addr, &startup),
        })
        .collect();
    assert_eq!(server.query(&["select count(*) from events"]), EVENTS);
    let out = server.psql("sslmode=prefer", Some(PASSWORD), &["select count(*) from events"]);
    assert!(out.status.success(), "{}", output_text(&out));

    // max_connections still counts the clients that logged in.
    let port = server.addr.port().to_string();
    let held = python_client(&["hold", &port, PASSWORD, "3"]);
    assert_eq!(held[0], "ok", "{held}");
    assert_eq!(held[1], "ok", "{held}");
    assert!(
        held[2].as_str().unwrap_or("").contains("too many clients"),
        "the third session should be refused: {held}"
    );
    // Their places are given back as the server sees them leave.
    std::thread::sleep(Duration::from_millis(500));

    // A flood past the bound of logins in progress (1024): the oldest
    // sockets are closed to make room, and a real client still logs in.
    idle.extend((0..1000).map(|_| idle_socket(server.addr, &[])));
    assert_eq!(server.query(&["select count(*) from events"]), EVENTS);
    let closed = idle.iter_mut().take(200).map(|s| closed_within(s, 0.05).0).filter(|c| *c).count();
    assert!(closed >= 170, "only {closed} of the 200 oldest logins were closed");
    let open = idle[1100..].iter_mut().map(|s| closed_within(s, 0.01).0).filter(|c| !*c).count();
    assert_eq!(open, 100, "the newest logins were closed");
}

#[test]
fn a_login_that_does_not_finish_in_time_is_closed() {
    let p = published();
    let config = config_with(p.dir.path(), |t| {
        set(t, &["server", "login_timeout_seconds"], toml::Value::Integer(1));
    });
    let server = Server::start(&p, Some(&config), Some(PASSWORD));
    let start = Instant::now();
    let mut silent = idle_socket(server.addr, &[]);
    let mut stalled = idle_socket(server.addr, &startup_message());
    let (closed, _) = closed_within(&mut silent, 10.0);
    assert!(closed, "a socket that sent nothing was kept");
    let (closed, got) = closed_within(&mut stalled, 10.0);
    assert!(closed, "a login stalled after its startup message was kept");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "closed before the login timeout: {:?}",
        start.elapsed()
    );
    // An authentication request, then FATAL 57014 saying why.
    assert_eq!(got.first(), Some(&b'R'), "{got:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("C57014") && text.contains("authentication due to timeout"),
        "{text:?}"
    );
    // A real client logs in well within the second.
    assert_eq!(server.query(&["select count(*) from events"]), EVENTS);
}

#[test]
fn an_idle_session_is_closed_a_busy_one_is_not() {
    let p = published();
    let config = config_with(p.dir.path(), |t| {
        set(t, &["server", "idle_timeout_seconds"], toml::Value::Integer(2));
    });
    let server = Server::start(&p, Some(&config), Some(PASSWORD));
    // Queries every half second for longer than the idle timeout.
    let mut busy = vec!["select 1"];
    for _ in 0..7 {
        busy.extend(["\\! sleep 0.5", "select 1"]);
    }
    let start = Instant::now();
    let out = server.query(&busy);
    assert!(start.elapsed() > Duration::from_secs(3), "{:?}", start.elapsed());
    assert_eq!(out, vec!["1"; 8].join("\n"));
    // Nothing for longer than it: the next query finds the session closed.
    let out = server.psql(
        "",
        Some(PASSWORD),
        &["select 1", "\\! sleep 4", "select count(*) from events"],
    );
    assert!(!out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("57P05") && err.contains("idle-session timeout"),
        "{}",
        output_text(&out)
    );
    server.wait_for_log("IdleTimeout", 10);
}

#[test]
fn a_query_over_its_memory_limit_fails_with_53200_and_the_server_keeps_serving() {
    let p = published();
    let config = config_with(p.dir.path(), |t| {
        set(t, &["server", "query_memory_mb"], toml::Value::Integer(16));
    });
    let server = Server::start(&p, Some(&config), Some(PASSWORD));
    // 10 million values held at once (80 MB), with nothing to spill.
    server.refused(
        "select cardinality(array_agg(value)) from generate_series(1, 10000000)",
        "53200",
    );
    // A sort of 3 million rows (24 MB) spills to disk within the 16 MB.
    assert_eq!(
        server.query(&[
            "select max(r) from (select row_number() over (order by value desc) as r from generate_series(1, 3000000))"
        ]),
        "3000000"
    );
    // The next queries, on this and on new connections, run.
    assert_eq!(
        server.query(&["select cardinality(array_agg(value)) from generate_series(1, 100000)"]),
        "100000"
    );
    assert_eq!(server.query(&["select count(*) from events"]), EVENTS);
}
