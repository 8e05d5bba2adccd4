//! Scheduler tests on a fake clock, a fake waker and fake runs: firing,
//! catch-up from the run history, retries, no overlap between two
//! schedulers on one warehouse, stopping, and losing the lease.

use super::*;
use crate::config::StorageSettings;
use crate::storage::Storage;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("rfc3339").with_timezone(&Utc)
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

struct FakeClock(Mutex<DateTime<Utc>>);

impl FakeClock {
    fn at(t: &str) -> Arc<FakeClock> {
        Arc::new(FakeClock(Mutex::new(utc(t))))
    }
    fn set(&self, t: DateTime<Utc>) {
        let mut now = self.0.lock().expect("clock");
        if t > *now {
            *now = t;
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock")
    }
}

/// Jumps the clock to a second past the fire time.
struct FakeWaker(Arc<FakeClock>);

#[async_trait(?Send)]
impl Waker for FakeWaker {
    async fn wait_until(&self, _pipeline: &str, at: DateTime<Utc>) {
        self.0.set(at + chrono::Duration::seconds(1));
        tokio::task::yield_now().await;
    }
}

/// What every fake runner of a test saw.
#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<(String, NaiveDate)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A run that takes `delay`, answers from `script` (then succeeds), and asks
/// the scheduler to stop after `stop_after` runs.
struct FakeRunner {
    who: String,
    shared: Arc<Shared>,
    script: Mutex<VecDeque<Option<AttemptError>>>,
    delay: Option<Duration>,
    stop_after: usize,
    stop: watch::Sender<bool>,
}

impl FakeRunner {
    fn new(who: &str, shared: Arc<Shared>, stop: watch::Sender<bool>) -> Self {
        FakeRunner {
            who: who.into(),
            shared,
            script: Mutex::new(VecDeque::new()),
            delay: None,
            stop_after: usize::MAX,
            stop,
        }
    }
}

fn transient() -> Option<AttemptError> {
    Some(AttemptError {
        message: "connection reset".into(),
        permanent: false,
        timed_out: false,
    })
}

fn permanent() -> Option<AttemptError> {
    Some(AttemptError {
        message: "model marts.x: unknown column".into(),
        permanent: true,
        timed_out: false,
    })
}

#[async_trait(?Send)]
impl Runner for FakeRunner {
    async fn run(&self, _pipeline: &str, as_of: NaiveDate) -> Attempt {
        let n = self.shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.max_in_flight.fetch_max(n, Ordering::SeqCst);
        match self.delay {
            Some(d) => tokio::time::sleep(d).await,
            None => tokio::task::yield_now().await,
        }
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        let calls = {
            let mut calls = self.shared.calls.lock().expect("calls");
            calls.push((self.who.clone(), as_of));
            calls.len()
        };
        if calls >= self.stop_after {
            let _ = self.stop.send(true);
        }
        let error = self.script.lock().expect("script").pop_front().flatten();
        Attempt {
            run_id: Some(format!("run-{calls}")),
            seconds: 0.25,
            rows_ingested: 10,
            error,
        }
    }
}

/// A run that never ends.
struct Forever;

#[async_trait(?Send)]
impl Runner for Forever {
    async fn run(&self, _pipeline: &str, _as_of: NaiveDate) -> Attempt {
        std::future::pending::<Attempt>().await
    }
}

fn warehouse(dir: &std::path::Path) -> Warehouse {
    Warehouse::open(&Storage::new(StorageSettings::default()), &dir.display().to_string()).expect("warehouse")
}

#[allow(clippy::too_many_arguments)]
fn worker<'a>(
    expr: &str,
    catch_up: CatchUp,
    reporting_tz: Tz,
    runner: &'a dyn Runner,
    clock: Arc<FakeClock>,
    wh: &Warehouse,
    holder: &str,
    stop: watch::Receiver<bool>,
) -> Worker<'a> {
    Worker {
        pipeline: "daily".into(),
        schedule: CronSchedule::parse(expr, Tz::UTC).expect("schedule"),
        catch_up,
        retry: RetryPolicy::new(3, Duration::from_millis(5)),
        reporting_tz,
        lease: LeaseStore::new(wh, "daily", holder, Duration::from_secs(60)),
        lease_poll: Duration::from_millis(5),
        grace: Duration::from_secs(5),
        runner,
        clock,
        metrics: Arc::new(Metrics::new(["daily"])),
        stop,
        vacuum: None,
    }
}

fn as_ofs(shared: &Shared) -> Vec<NaiveDate> {
    shared.calls.lock().expect("calls").iter().map(|(_, d)| *d).collect()
}

fn success(pipeline: &str, started_at: &str, as_of: &str, status: &str) -> RunReport {
    serde_json::from_value(serde_json::json!({
        "run_id": format!("{started_at}-x"), "pipeline": pipeline, "trigger": "scheduled", "status": status,
        "as_of": as_of, "timezone": "UTC", "started_at": started_at, "seconds": 1.0,
    }))
    .expect("a run report")
}

#[tokio::test]
async fn fires_on_schedule_with_the_local_date_of_the_fire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = warehouse(dir.path());
    let clock = FakeClock::at("2026-05-01T12:00:00Z");
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::default());
    let mut runner = FakeRunner::new("a", shared.clone(), stop_tx);
    runner.stop_after = 3;
    // 23:00 UTC is already the next day in Tokyo, the reporting timezone.
    let mut w = worker("0 23 * * *", CatchUp::Latest, chrono_tz::Asia::Tokyo, &runner, clock.clone(), &wh, "a", stop_rx);
    w.run(&FakeWaker(clock.clone()), &[]).await;
    assert_eq!(as_ofs(&shared), vec![date("2026-05-02"), date("2026-05-03"), date("2026-05-04")]);
    let lease = w.lease.current().await.expect("read").expect("lease");
    assert!(lease.released);
    assert_eq!(lease.last_fire, Some(utc("2026-05-03T23:00:00Z")));
    assert_eq!(lease.last_status.as_deref(), Some("succeeded"));
    let m = w.metrics.get("daily");
    assert_eq!((m.runs_total, m.failures_total, m.rows_ingested_total), (3, 0, 30));
    assert!(m.last_success_timestamp_seconds.is_some());
    assert!(!m.running);
}

#[tokio::test]
async fn catch_up_after_downtime_follows_the_policy() {
    // Last success: the May 1st run; the scheduler comes back on May 4th at noon.
    let history = vec![
        success("daily", "2026-05-01T06:00:02+00:00", "2026-05-01", "succeeded"),
        success("daily", "2026-05-02T06:00:02+00:00", "2026-05-02", "failed"),
        success("other", "2026-05-03T06:00:02+00:00", "2026-05-03", "succeeded"),
    ];
    for (policy, expected) in [
        (CatchUp::All, vec!["2026-05-02", "2026-05-03", "2026-05-04", "2026-05-05"]),
        (CatchUp::Latest, vec!["2026-05-04", "2026-05-05"]),
        (CatchUp::None, vec!["2026-05-05"]),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let wh = warehouse(dir.path());
        let clock = FakeClock::at("2026-05-04T12:00:00Z");
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let mut runner = FakeRunner::new("a", shared.clone(), stop_tx);
        // Stop after the first regular run, on May 5th.
        runner.stop_after = expected.len();
        let mut w = worker("0 6 * * *", policy, Tz::UTC, &runner, clock.clone(), &wh, "a", stop_rx);
        w.run(&FakeWaker(clock.clone()), &history).await;
        let expected: Vec<NaiveDate> = expected.into_iter().map(date).collect();
        assert_eq!(as_ofs(&shared), expected, "{policy:?}");
    }
}

#[test]
fn the_newest_covered_fire_comes_from_successful_runs_of_the_pipeline() {
    let s = CronSchedule::parse("0 6 * * *", Tz::UTC).expect("schedule");
    let history = vec![
        success("daily", "2026-05-01T06:00:02+00:00", "2026-05-01", "succeeded"),
        // A backfill of an old date, run later: covers only its date.
        success("daily", "2026-05-03T09:00:00+00:00", "2026-04-01", "succeeded"),
        success("daily", "2026-05-02T06:00:02+00:00", "2026-05-02", "failed"),
        success("other", "2026-05-03T06:00:02+00:00", "2026-05-03", "succeeded"),
    ];
    assert_eq!(last_covered(&history, "daily", &s, Tz::UTC), Some(utc("2026-05-01T06:00:00Z")));
    assert_eq!(last_covered(&history, "weekly", &s, Tz::UTC), None);
}

#[tokio::test]
async fn transient_failures_retry_permanent_ones_do_not() {
    let slot = Slot::new(utc("2026-05-02T06:00:00Z"), Tz::UTC);
    for (script, retries, expected, calls) in [
        (vec![transient(), transient(), None], 3, SlotOutcome::Succeeded, 3),
        (vec![permanent()], 3, SlotOutcome::Failed, 1),
        (vec![transient(), transient(), transient()], 1, SlotOutcome::Failed, 2),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let wh = warehouse(dir.path());
        let clock = FakeClock::at("2026-05-02T06:00:01Z");
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let runner = FakeRunner::new("a", shared.clone(), stop_tx);
        *runner.script.lock().expect("script") = script.into();
        let mut w = worker("0 6 * * *", CatchUp::Latest, Tz::UTC, &runner, clock.clone(), &wh, "a", stop_rx);
        w.retry = RetryPolicy::new(retries, Duration::from_millis(5));
        assert_eq!(w.handle_slot(slot).await, expected);
        assert_eq!(as_ofs(&shared).len(), calls);
        let m = w.metrics.get("daily");
        assert_eq!(m.runs_total, calls as u64);
        assert_eq!(m.retries_total, calls as u64 - 1);
        // The slot is handled either way: the fence moves on.
        let lease = w.lease.current().await.expect("read").expect("lease");
        assert_eq!(lease.last_fire, Some(slot.fire));
    }
}

/// A run stopped by its timeout is a failure that is not retried, counted
/// in `tenure_run_timeouts_total` as well.
#[tokio::test]
async fn a_timed_out_run_fails_its_slot_and_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = warehouse(dir.path());
    let clock = FakeClock::at("2026-05-02T06:00:01Z");
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::default());
    let runner = FakeRunner::new("a", shared.clone(), stop_tx);
    let timed_out = AttemptError {
        message: "the run took longer than its run_timeout_seconds".into(),
        permanent: true,
        timed_out: true,
    };
    *runner.script.lock().expect("script") = vec![Some(timed_out), None].into();
    let w = worker("0 6 * * *", CatchUp::Latest, Tz::UTC, &runner, clock.clone(), &wh, "a", stop_rx);
    assert_eq!(w.handle_slot(Slot::new(utc("2026-05-02T06:00:00Z"), Tz::UTC)).await, SlotOutcome::Failed);
    let m = w.metrics.get("daily");
    assert_eq!((m.runs_total, m.failures_total, m.timeouts_total, m.retries_total), (1, 1, 1, 0));
}

#[tokio::test]
async fn two_schedulers_on_one_warehouse_run_each_slot_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = warehouse(dir.path());
    let clock = FakeClock::at("2026-05-01T06:00:01Z");
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::default());
    let mut run_a = FakeRunner::new("a", shared.clone(), stop_tx.clone());
    let mut run_b = FakeRunner::new("b", shared.clone(), stop_tx);
    run_a.delay = Some(Duration::from_millis(30));
    run_b.delay = Some(Duration::from_millis(30));
    let a = worker("0 6 * * *", CatchUp::Latest, Tz::UTC, &run_a, clock.clone(), &wh, "host-a", stop_rx.clone());
    let b = worker("0 6 * * *", CatchUp::Latest, Tz::UTC, &run_b, clock.clone(), &wh, "host-b", stop_rx);
    let fires = ["2026-05-01T06:00:00Z", "2026-05-02T06:00:00Z", "2026-05-03T06:00:00Z", "2026-05-04T06:00:00Z"];
    for fire in fires {
        clock.set(utc(fire) + chrono::Duration::seconds(1));
        let slot = Slot::new(utc(fire), Tz::UTC);
        let (x, y) = tokio::join!(a.handle_slot(slot), b.handle_slot(slot));
        let outcomes = [x, y];
        assert_eq!(outcomes.iter().filter(|o| **o == SlotOutcome::Succeeded).count(), 1, "{fire}: {outcomes:?}");
        assert_eq!(outcomes.iter().filter(|o| matches!(o, SlotOutcome::Skipped { .. })).count(), 1, "{fire}: {outcomes:?}");
    }
    let mut ran = as_ofs(&shared);
    ran.sort();
    let expected: Vec<NaiveDate> = fires.iter().map(|f| utc(f).date_naive()).collect();
    assert_eq!(ran, expected, "each slot exactly once");
    assert_eq!(shared.max_in_flight.load(Ordering::SeqCst), 1, "never two runs at once");
    let skipped = a.metrics.get("daily").skipped_total + b.metrics.get("daily").skipped_total;
    assert_eq!(skipped, fires.len() as u64);
}

#[tokio::test]
async fn a_stop_request_lets_the_run_finish_within_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = warehouse(dir.path());
    let clock = FakeClock::at("2026-05-02T06:00:01Z");
    let slot = Slot::new(utc("2026-05-02T06:00:00Z"), Tz::UTC);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::default());
    let mut runner = FakeRunner::new("a", shared.clone(), stop_tx.clone());
    runner.delay = Some(Duration::from_millis(50));
    let w = worker("0 6 * * *", CatchUp::Latest, Tz::UTC, &runner, clock.clone(), &wh, "a", stop_rx);
    let stop_soon = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = stop_tx.send(true);
    };
    let (outcome, ()) = tokio::join!(w.handle_slot(slot), stop_soon);
    assert_eq!(outcome, SlotOutcome::Succeeded);
    // Stopped: the next slot does not start.
    assert_eq!(w.handle_slot(Slot::new(utc("2026-05-03T06:00:00Z"), Tz::UTC)).await, SlotOutcome::Stopped);
    assert_eq!(as_ofs(&shared).len(), 1);
}

#[tokio::test]
async fn a_run_past_the_grace_period_is_aborted_and_the_lease_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = warehouse(dir.path());
    let clock = FakeClock::at("2026-05-02T06:00:01Z");
    let slot = Slot::new(utc("2026-05-02T06:00:00Z"), Tz::UTC);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut w = worker("0 6 * * *", CatchUp::Latest, Tz::UTC, &Forever, clock.clone(), &wh, "a", stop_rx);
    w.grace = Duration::from_millis(30);
    let stop_soon = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = stop_tx.send(true);
    };
    let (outcome, ()) = tokio::join!(w.handle_slot(slot), stop_soon);
    assert_eq!(outcome, SlotOutcome::Aborted);
    let lease = w.lease.current().await.expect("read").expect("lease");
    assert!(lease.released, "released for the next scheduler");
    assert_eq!(lease.last_fire, None, "the aborted slot is not marked as handled");
}

#[tokio::test]
async fn a_holder_that_loses_its_lease_stops_its_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = warehouse(dir.path());
    let clock = FakeClock::at("2026-05-02T06:00:01Z");
    let slot = Slot::new(utc("2026-05-02T06:00:00Z"), Tz::UTC);
    let (_stop_tx, stop_rx) = watch::channel(false);
    let mut a = worker("0 6 * * *", CatchUp::Latest, Tz::UTC, &Forever, clock.clone(), &wh, "a", stop_rx);
    // Renewals every 100 ms of real time.
    a.lease = LeaseStore::new(&wh, "daily", "a", Duration::from_millis(300));
    let b = LeaseStore::new(&wh, "daily", "b", Duration::from_secs(60));
    let take_over = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        // a hangs (its clock jumps past the expiry); b takes the lease over.
        clock.set(utc("2026-05-02T07:00:00Z"));
        match b.try_acquire(clock.now()).await.expect("b") {
            Acquire::Held(_) => {}
            Acquire::Busy { holder, .. } => panic!("b should take over from {holder}"),
        }
    };
    let (outcome, ()) = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(a.handle_slot(slot), take_over) })
        .await
        .expect("a stops its run");
    assert_eq!(outcome, SlotOutcome::Aborted);
    let lease = b.current().await.expect("read").expect("lease");
    assert_eq!(lease.holder, "b", "a did not clobber b's lease");
    assert!(!lease.released);
}

fn health(clock: Arc<FakeClock>, metrics: Arc<Metrics>, expr: &str, since: &str) -> health::Health {
    health::Health {
        metrics,
        clock,
        schedules: vec![("daily".into(), CronSchedule::parse(expr, Tz::UTC).expect("schedule"))],
        since: utc(since),
    }
}

#[tokio::test]
async fn healthz_turns_unhealthy_when_the_last_success_is_older_than_twice_the_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = warehouse(dir.path());
    let clock = FakeClock::at("2026-05-02T06:00:01Z");
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::default());
    let runner = FakeRunner::new("a", shared, stop_tx);
    *runner.script.lock().expect("script") = vec![None, permanent()].into();
    let w = worker("0 6 * * *", CatchUp::Latest, Tz::UTC, &runner, clock.clone(), &wh, "a", stop_rx);
    let h = health(clock.clone(), w.metrics.clone(), "0 6 * * *", "2026-05-01T12:00:00Z");
    assert_eq!(h.stale(), vec![]);

    // The May 2nd run succeeds (its end: 06:00:01), May 3rd fails.
    assert_eq!(w.handle_slot(Slot::new(utc("2026-05-02T06:00:00Z"), Tz::UTC)).await, SlotOutcome::Succeeded);
    clock.set(utc("2026-05-03T06:00:01Z"));
    assert_eq!(w.handle_slot(Slot::new(utc("2026-05-03T06:00:00Z"), Tz::UTC)).await, SlotOutcome::Failed);
    // One failure is within twice the daily interval...
    clock.set(utc("2026-05-04T06:00:01Z"));
    assert_eq!(h.stale(), vec![]);
    // ...a second one is not.
    clock.set(utc("2026-05-04T06:00:02Z"));
    let stale = h.stale();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].pipeline, "daily");
    assert_eq!(stale[0].last_success, Some(utc("2026-05-02T06:00:01Z")));
    assert_eq!(stale[0].interval, chrono::Duration::days(1));
    let text = stale[0].to_string();
    assert!(text.contains("pipeline daily") && text.contains("2026-05-02T06:00:01Z") && text.contains("2d00h00m ago"), "{text}");

    // Over HTTP: 503 naming the pipeline; 200 again after the next success.
    let (listener, addr) = health::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let server = tokio::spawn(health::serve(listener, Arc::new(h)));
    let get = || async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    };
    let r = get().await;
    assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
    assert!(r.contains("\r\n\r\nunhealthy\npipeline daily: last success at 2026-05-02T06:00:01Z"), "{r}");
    assert_eq!(w.handle_slot(Slot::new(utc("2026-05-04T06:00:00Z"), Tz::UTC)).await, SlotOutcome::Succeeded);
    let r = get().await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nok\n"), "{r}");
    server.abort();
}

#[test]
fn healthz_judges_an_uneven_schedule_by_its_longer_gap_and_a_new_pipeline_from_the_start() {
    let clock = FakeClock::at("2026-05-03T12:00:00Z");
    let metrics = Arc::new(Metrics::new(["daily"]));
    // Weekdays at 06:00; 2026-05-01 is a Friday. Its Friday run succeeded.
    let friday = utc("2026-05-01T06:05:00Z").timestamp() as f64;
    metrics.update("daily", |m| m.last_success_timestamp_seconds = Some(friday));
    let h = health(clock.clone(), metrics.clone(), "0 6 * * MON-FRI", "2026-04-01T00:00:00Z");
    // Sunday: the weekend gap is 3 days; Friday's success is fresh.
    assert_eq!(h.stale(), vec![]);
    // Monday's run failed: still within twice the 3-day gap it follows.
    clock.set(utc("2026-05-04T12:00:00Z"));
    assert_eq!(h.stale(), vec![]);
    // Tuesday's failed too: the gaps around now are a day, Friday is 4 days ago.
    clock.set(utc("2026-05-05T12:00:00Z"));
    let stale = h.stale();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].interval, chrono::Duration::days(1));

    // Hourly, never succeeded: measured from the scheduler's start.
    let clock = FakeClock::at("2026-05-01T10:30:00Z");
    let h = health(clock.clone(), Arc::new(Metrics::new(["daily"])), "0 * * * *", "2026-05-01T10:30:00Z");
    clock.set(utc("2026-05-01T12:29:00Z"));
    assert_eq!(h.stale(), vec![]);
    clock.set(utc("2026-05-01T12:31:00Z"));
    let stale = h.stale();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].last_success, None);
    assert!(stale[0].to_string().contains("no successful run"), "{}", stale[0]);
}

#[test]
fn the_last_success_comes_from_the_newest_successful_run_of_the_pipeline() {
    let mut finished = success("daily", "2026-05-02T06:00:02+00:00", "2026-05-02", "succeeded");
    finished.finished_at = Some("2026-05-02T06:10:00+00:00".into());
    let history = vec![
        success("daily", "2026-05-01T06:00:02+00:00", "2026-05-01", "succeeded"),
        finished,
        success("daily", "2026-05-03T06:00:02+00:00", "2026-05-03", "failed"),
        success("other", "2026-05-04T06:00:02+00:00", "2026-05-04", "succeeded"),
    ];
    assert_eq!(last_success(&history, "daily"), Some(utc("2026-05-02T06:10:00Z")));
    // Without an end time: its start plus its duration (1 s in these reports).
    assert_eq!(last_success(&history[..1], "daily"), Some(utc("2026-05-01T06:00:03Z")));
    assert_eq!(last_success(&history, "weekly"), None);
}

/// Vacuum is due after a success once a fire time of `vacuum.schedule` has
/// passed since the last vacuum on record, and not before.
#[tokio::test]
async fn vacuum_is_due_once_a_fire_time_passed_since_the_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = crate::storage::Storage::new(Default::default());
    let warehouse = Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
    let job = VacuumJob {
        warehouse: warehouse.clone(),
        schedule: CronSchedule::parse("0 4 * * *", Tz::UTC).expect("schedule"),
        options: crate::vacuum::VacuumOptions::default(),
        busy: tokio::sync::Mutex::new(()),
    };
    let at = |t: &str| DateTime::parse_from_rfc3339(t).expect("time").with_timezone(&Utc);
    let first = job.run_if_due(at("2026-11-10T06:00:00Z")).await;
    assert!(first.is_some_and(|r| r.is_ok()), "no vacuum on record: due");
    let recorded = crate::vacuum::last(&warehouse).await.expect("a record");
    assert!(recorded.finished_at.starts_with("2026-11-10T06:00"), "{}", recorded.finished_at);
    assert!(job.run_if_due(at("2026-11-11T03:59:00Z")).await.is_none(), "no fire time since the last vacuum");
    assert!(job.run_if_due(at("2026-11-11T04:30:00Z")).await.is_some(), "04:00 passed");
    assert!(job.run_if_due(at("2026-11-11T05:00:00Z")).await.is_none(), "done for the day");
}
