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
