//! BG/NBD and Gamma-Gamma against the papers (METRICS.md §14): fit on the
//! CDNOW sample (2,357 customers, calibration through 1997-09-30, weeks),
//! the estimates must be the published ones to 3 significant digits. The
//! sample ships in the `Lifetimes` wheel on PyPI, fetched here with pip.

use crate::common::{output_text, python};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tenure::clv::{bgnbd_log_likelihood, fit_bgnbd, fit_gamma_gamma, Customer};

/// The CDNOW sample (customer, id, yyyymmdd, CDs, dollars), from the
/// Lifetimes 0.11.3 wheel downloaded into `dir`.
fn cdnow_sample(dir: &Path) -> PathBuf {
    let out = Command::new(python())
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check", "lifetimes==0.11.3", "-d"])
        .arg(dir)
        .output()
        .expect("pip download");
    assert!(out.status.success(), "pip download lifetimes==0.11.3:\n{}", output_text(&out));
    let target = dir.join("CDNOW_sample.txt");
    let script = "import glob, sys, zipfile\n\
                  wheel = glob.glob(sys.argv[1] + '/*.whl')[0]\n\
                  open(sys.argv[2], 'wb').write(zipfile.ZipFile(wheel).read('lifetimes/datasets/CDNOW_sample.txt'))\n";
    let out = Command::new(python()).args(["-c", script]).arg(dir).arg(&target).output().expect("unzip");
    assert!(out.status.success(), "extract the CDNOW sample:\n{}", output_text(&out));
    target
}

/// Per customer: purchase days through `end` (a day's amounts summed), as
/// METRICS.md §14 says, in weeks.
fn customers(sample: &Path, end: chrono::NaiveDate) -> Vec<Customer> {
    let text = std::fs::read_to_string(sample).expect("sample");
    let mut days: BTreeMap<&str, BTreeMap<chrono::NaiveDate, f64>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [customer, _, date, _, dollars] = fields.as_slice() else { continue };
        let date = chrono::NaiveDate::parse_from_str(date, "%Y%m%d").expect("date");
        if date <= end {
            *days.entry(customer).or_default().entry(date).or_insert(0.0) += dollars.parse::<f64>().expect("dollars");
        }
    }
    days.values()
        .map(|d| {
            let first = *d.keys().next().expect("a day");
            let last = *d.keys().next_back().expect("a day");
            let repeat: Vec<f64> = d.values().skip(1).copied().collect();
            Customer {
                x: repeat.len() as f64,
                t_x: (last - first).num_days() as f64 / 7.0,
                t: (end - first).num_days() as f64 / 7.0,
                monetary: (!repeat.is_empty()).then(|| repeat.iter().sum::<f64>() / repeat.len() as f64),
            }
        })
        .collect()
}

/// `value` equals `published` to 3 significant digits.
fn three_digits(value: f64, published: f64) -> bool {
    let scale = 10f64.powf(published.abs().log10().floor() - 2.0);
    (value / scale).round() == (published / scale).round()
}

#[test]
fn cdnow_estimates_match_the_papers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = cdnow_sample(dir.path());
    let end = chrono::NaiveDate::from_ymd_opt(1997, 9, 30).expect("date");
    let book = customers(&sample, end);
    assert_eq!(book.len(), 2357, "the sample's customers all bought in the calibration period");

    let fit = fit_bgnbd(&book).expect("a BG/NBD fit");
    assert!(fit.converged, "{fit:?}");
    for (name, value, published) in [("r", fit.r, 0.243), ("alpha", fit.alpha, 4.414), ("a", fit.a, 0.793), ("b", fit.b, 2.426)] {
        assert!(three_digits(value, published), "{name} = {value}, published {published}: {fit:?}");
    }
    assert!((fit.log_likelihood - -9582.4).abs() < 0.05, "log-likelihood {}", fit.log_likelihood);
    // A maximum: a small step along any parameter lowers the likelihood.
    let best = [fit.r, fit.alpha, fit.a, fit.b];
    for k in 0..4 {
        for step in [0.999, 1.001] {
            let mut p = best;
            p[k] *= step;
            assert!(bgnbd_log_likelihood(p, &book).0 < fit.log_likelihood, "parameter {k} x {step}");
        }
    }

    let gg = fit_gamma_gamma(&book).expect("a Gamma-Gamma fit");
    assert!(gg.converged, "{gg:?}");
    for (name, value, published) in [("p", gg.p, 6.25), ("q", gg.q, 3.74), ("gamma", gg.gamma, 15.44)] {
        assert!(three_digits(value, published), "{name} = {value}, published {published}: {gg:?}");
    }
}

/// The CDNOW sample as `payment.succeeded` events (JSON Lines), one per
/// line of the sample, at noon UTC of its date.
fn cdnow_events(sample: &Path, raw: &Path) {
    let text = std::fs::read_to_string(sample).expect("sample");
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [customer, _, date, _, dollars] = fields.as_slice() else { continue };
        let date = chrono::NaiveDate::parse_from_str(date, "%Y%m%d").expect("date");
        let event = serde_json::json!({
            "event_id": format!("cdnow-{i}"),
            "event_type": "payment.succeeded",
            "customer_id": format!("c{customer:0>5}"),
            "occurred_at": format!("{date}T12:00:00Z"),
            "amount": dollars,
        });
        out.push_str(&event.to_string());
        out.push('\n');
    }
    std::fs::write(raw.join("cdnow.jsonl"), out).expect("write events");
}

/// The published figures of one row as numbers (NULL: NaN).
fn number(row: &serde_json::Value, column: &str) -> f64 {
    match &row[column] {
        serde_json::Value::Number(n) => n.as_f64().expect("a number"),
        serde_json::Value::String(s) => s.parse().unwrap_or_else(|_| panic!("{column} = {s:?}")),
        serde_json::Value::Null => f64::NAN,
        other => panic!("{column} = {other}"),
    }
}

fn close_to(value: f64, expected: f64) -> bool {
    (value - expected).abs() <= 1e-9 * expected.abs().max(1.0)
}

/// The pipeline as users run it: the CDNOW purchases as payment events, a
/// run as of 1997-09-30, and `clv_model` read back by an independent reader
/// has the papers' estimates; `customer_clv` holds each customer's inputs
/// and the papers' formulas at those estimates.
#[test]
fn cdnow_through_the_pipeline() {
    let p = crate::common::Project::new();
    let sample = cdnow_sample(p.dir.path());
    cdnow_events(&sample, &p.raw);
    let opts = crate::common::RunOpts {
        as_of: "1997-09-30".into(),
        ..Default::default()
    };
    p.run_with(&opts);

    let model = crate::common::read_table(&p.warehouse.join("marts/clv_model"));
    assert_eq!(model.rows.len(), 1, "{:?}", model.rows);
    let m = &model.rows[0];
    assert_eq!(m["as_of"], "1997-09-30");
    assert_eq!(m["customers"], 2357);
    assert_eq!(m["time_unit_days"], 7);
    assert_eq!(m["converged"], true, "{m}");
    for (name, published) in [("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426), ("p", 6.25), ("q", 3.74), ("gamma", 15.44)] {
        assert!(three_digits(number(m, name), published), "{name} = {}, published {published}: {m}", number(m, name));
    }
    assert!((number(m, "bgnbd_log_likelihood") - -9582.4).abs() < 0.05, "{m}");

    let end = chrono::NaiveDate::from_ymd_opt(1997, 9, 30).expect("date");
    let book = customers(&sample, end);
    assert_eq!(m["repeat_customers"], book.iter().filter(|c| c.x > 0.0).count());
    let (r, alpha, a, b) = (number(m, "r"), number(m, "alpha"), number(m, "a"), number(m, "b"));
    let (gp, gq, gg) = (number(m, "p"), number(m, "q"), number(m, "gamma"));

    let clv = crate::common::read_table(&p.warehouse.join("marts/customer_clv"));
    assert_eq!(clv.rows.len(), 2357);
    let mut inputs: Vec<(f64, f64, f64)> = Vec::new();
    for row in &clv.rows {
        let (x, t_x, t) = (number(row, "frequency"), number(row, "recency"), number(row, "t"));
        inputs.push((x, t_x, t));
        // P(alive) of "Counting your customers the easy way", eq. (12).
        let p_alive = if x == 0.0 { 1.0 } else { 1.0 / (1.0 + a / (b + x - 1.0) * ((alpha + t) / (alpha + t_x)).powf(r + x)) };
        assert!(close_to(number(row, "p_alive"), p_alive), "{row}: p_alive {p_alive}");
        // The Gamma-Gamma conditional mean of "RFM and CLV", eq. (5).
        let m_x = number(row, "monetary_value");
        let value = if x == 0.0 { gp * gg / (gq - 1.0) } else { (gq - 1.0) / (gp * x + gq - 1.0) * gp * gg / (gq - 1.0) + gp * x / (gp * x + gq - 1.0) * m_x };
        assert!(close_to(number(row, "expected_avg_value"), value), "{row}: expected value {value}");
        let e = number(row, "expected_purchases");
        assert!(e.is_finite() && e >= 0.0, "{row}");
        assert!(close_to(number(row, "clv"), e * value), "{row}");
    }
    // Each customer's inputs are the sample's, by the rules of METRICS.md §14.
    let mut expected: Vec<(f64, f64, f64)> = book.iter().map(|c| (c.x, c.t_x, c.t)).collect();
    let order = |v: &mut Vec<(f64, f64, f64)>| v.sort_by(|l, r| l.partial_cmp(r).expect("numbers"));
    order(&mut inputs);
    order(&mut expected);
    assert!(inputs.iter().zip(&expected).all(|(l, r)| close_to(l.0, r.0) && close_to(l.1, r.1) && close_to(l.2, r.2)));

    // The paper's worked example: at the published estimates, a customer
    // with x = 2, t_x = 30.43 and T = 38.86 makes 1.226 purchases in the
    // next 39 weeks.
    let out = crate::common::tenure(&[
        "query",
        "--warehouse",
        &p.warehouse.display().to_string(),
        "--format",
        "csv",
        "select clv_expected_purchases(0.243, 4.414, 0.793, 2.426, 2, 30.43, 38.86, 39) as e",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let e: f64 = text.lines().nth(1).expect("a value").trim().parse().expect("a number");
    assert!((e - 1.226).abs() < 0.002, "E[Y(39)] = {e}");
}
