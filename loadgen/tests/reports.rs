//! Output files: JSON report fields, .hgrm, SVG plots and --overlay.

mod common;

use std::process::Command;

use common::{f, loadgen, u, Backend, Reply};

#[test]
fn json_hgrm_plot_and_overlay() {
    let b = Backend::start(|_| Reply::OK);
    let dir = std::env::temp_dir().join(format!("dao-loadgen-reports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hgrm = dir.join("run.hgrm");
    let svg = dir.join("run.svg");
    let (r, stdout) = loadgen(&[
        "-c",
        "2",
        "-R",
        "200",
        "-d",
        "500ms",
        "--latency",
        "--label",
        "first",
        "-H",
        "X-Test: yes",
        "--hgrm",
        hgrm.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        &b.url("/a"),
        &b.url("/b"),
    ]);
    // The JSON report carries config, counts and both latency views.
    assert_eq!(r["tool"], "dao-loadgen");
    assert_eq!(r["label"], "first");
    assert_eq!(u(&r, &["config", "connections"]), 2);
    assert_eq!(f(&r, &["config", "rate"]), 200.0);
    assert_eq!(r["config"]["urls"].as_array().unwrap().len(), 2);
    for view in ["corrected", "uncorrected"] {
        let l = &r["latency_ms"][view];
        for key in [
            "p50", "p75", "p90", "p99", "p99.9", "p99.99", "max", "mean", "stdev",
        ] {
            assert!(l[key].as_f64().is_some(), "{view}.{key} missing");
        }
        assert!(f(&r, &["latency_ms", view, "p50"]) <= f(&r, &["latency_ms", view, "max"]));
        assert!(l["spectrum"].as_array().unwrap().len() > 10);
    }
    assert!(
        f(&r, &["latency_ms", "corrected", "p50"]) >= f(&r, &["latency_ms", "uncorrected", "p50"])
    );
    assert!(stdout.contains("Detailed Percentile spectrum"), "{stdout}");
    assert!(stdout.contains("99.900%"));

    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert!(text.contains("#[Mean    ="));
    assert!(std::fs::read_to_string(dir.join("run.uncorrected.hgrm"))
        .unwrap()
        .contains("#[Max"));
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("first (corrected)"));

    // A second run, then overlay both reports.
    let first = dir.join("first.json");
    std::fs::write(&first, r.to_string()).unwrap();
    let (r2, _) = loadgen(&[
        "-c",
        "1",
        "-R",
        "100",
        "-d",
        "300ms",
        "--label",
        "second",
        &b.url("/"),
    ]);
    let second = dir.join("second.json");
    std::fs::write(&second, r2.to_string()).unwrap();
    let out = dir.join("both.svg");
    let status = Command::new(env!("CARGO_BIN_EXE_dao-loadgen"))
        .arg("--overlay")
        .arg(&first)
        .arg(&second)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let both = std::fs::read_to_string(&out).unwrap();
    assert!(both.contains("first (corrected)") && both.contains("second (uncorrected)"));
    assert_eq!(both.matches("<polyline").count(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}
