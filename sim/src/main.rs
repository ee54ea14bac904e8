//! dao-sim: runs DAO's balancing policies (the real `Balancer` code, fed
//! by the real Sense merge) and an oracle on the scenarios S0–S6 in
//! virtual time, with several seeds, and prints p50/p99/p99.9 and success
//! rates as markdown, then checks the targets of the Align issue.
//!
//!   cargo run --release -p dao-sim                      # everything, 3 seeds
//!   cargo run --release -p dao-sim -- --scenarios S1,S3 --policies resonant,least_request

// The simulator is a tool, not the data path: its worker threads share a
// job queue behind a lock.
#![allow(clippy::disallowed_types)]

mod engine;
mod model;
mod scenarios;

use std::collections::BTreeMap;
use std::sync::Mutex;

use clap::Parser;
use engine::{Chooser, RunStats};
use scenarios::Scenario;

#[derive(Parser)]
#[command(about = "Balancer simulator: every policy on scenarios S0–S6")]
struct Cli {
    /// Scenarios, comma-separated (S0..S6, and S3x: S3 into overload).
    #[arg(
        long,
        default_value = "S0,S1,S2,S3,S3x,S4,S5,S6",
        value_delimiter = ','
    )]
    scenarios: Vec<String>,
    /// Policies, comma-separated (any of DAO's, and "oracle").
    #[arg(
        long,
        default_value = "round_robin,weighted,random,least_request,peak_ewma,consistent_hash,resonant,oracle",
        value_delimiter = ','
    )]
    policies: Vec<String>,
    /// Seeds per cell; the table shows medians over them.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Threads running cells in parallel.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// Medians over seeds of one (scenario, policy) cell.
#[derive(Debug, Clone, Default)]
struct Cell {
    p50: f64,
    p99: f64,
    p999: f64,
    success: f64,
    /// Per class (name, p99 ms, share on target).
    classes: Vec<(String, f64, f64)>,
    failed_attempt_share: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn summarise(runs: &[RunStats], scn: &Scenario) -> Cell {
    let alls: Vec<_> = runs.iter().map(RunStats::all).collect();
    let q = |f: f64| {
        median(
            alls.iter()
                .map(|a| ms(a.latency.value_at_quantile(f)))
                .collect(),
        )
    };
    let classes = if scn.classes.len() > 1 {
        scn.classes
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let p99 = median(
                    runs.iter()
                        .map(|r| ms(r.classes[k].latency.value_at_quantile(0.99)))
                        .collect(),
                );
                let on = median(
                    runs.iter()
                        .map(|r| {
                            r.classes[k].on_target as f64 / r.classes[k].requests.max(1) as f64
                        })
                        .collect(),
                );
                (c.name.clone(), p99, on)
            })
            .collect()
    } else {
        Vec::new()
    };
    Cell {
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        success: median(
            alls.iter()
                .map(|a| a.ok as f64 / a.requests.max(1) as f64)
                .collect(),
        ),
        classes,
        failed_attempt_share: median(
            runs.iter()
                .map(|r| r.failed_attempts as f64 / r.attempts.max(1) as f64)
                .collect(),
        ),
    }
}

fn scenario(name: &str, seed: u64) -> Vec<Scenario> {
    match name {
        "S0" => vec![scenarios::s0()],
        "S1" => vec![scenarios::s1()],
        "S2" => vec![scenarios::s2()],
        "S3" => vec![scenarios::s3(seed, 0.6)],
        "S3x" => vec![scenarios::s3(seed, 1.0)],
        "S4" => vec![scenarios::s4()],
        "S5" => vec![scenarios::s5()],
        "S6" => [1_000, 10_000, 100_000, 1_000_000]
            .into_iter()
            .map(scenarios::s6)
            .collect(),
        other => {
            eprintln!("unknown scenario {other} (S0..S6, S3x)");
            std::process::exit(2);
        }
    }
}

fn main() {
    let cli = Cli::parse();
    for p in &cli.policies {
        let known = p == "oracle" || dao::memory::Policy::ALL.iter().any(|(n, _)| n == p);
        if !known {
            eprintln!("unknown policy {p}");
            std::process::exit(2);
        }
    }
    // Jobs: (scenario name, variant index, policy, seed).
    let mut jobs = Vec::new();
    for s in &cli.scenarios {
        let variants = scenario(s, 0).len();
        let policies: Vec<&String> = if s == "S6" {
            cli.policies.iter().filter(|p| *p == "resonant").collect()
        } else {
            cli.policies.iter().collect()
        };
        for v in 0..variants {
            for p in &policies {
                for seed in 1..=cli.seeds {
                    jobs.push((s.clone(), v, (*p).clone(), seed));
                }
            }
        }
    }
    let total = jobs.len();
    let queue = Mutex::new(jobs);
    let results: Mutex<BTreeMap<(String, usize, String), Vec<RunStats>>> =
        Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..cli.threads.max(1) {
            s.spawn(|| loop {
                let Some((name, v, policy, seed)) = queue.lock().unwrap().pop() else {
                    return;
                };
                let scn = scenario(&name, seed).swap_remove(v);
                let chooser = if policy == "oracle" {
                    Chooser::Oracle
                } else {
                    Chooser::Policy(policy.clone())
                };
                let stats = engine::run(&scn, &chooser, seed);
                let mut r = results.lock().unwrap();
                r.entry((name, v, policy)).or_default().push(stats);
                let done: usize = r.values().map(Vec::len).sum();
                eprint!("\r{done}/{total} runs");
            });
        }
    });
    eprintln!();
    let results = results.into_inner().unwrap();
    let mut cells: BTreeMap<(String, usize, String), Cell> = BTreeMap::new();
    for ((name, v, policy), runs) in &results {
        let scn = scenario(name, 1).swap_remove(*v);
        cells.insert((name.clone(), *v, policy.clone()), summarise(runs, &scn));
    }
    print_tables(&cli, &cells);
    print_targets(&cells);
}

fn print_tables(cli: &Cli, cells: &BTreeMap<(String, usize, String), Cell>) {
    println!("Medians over {} seeds; latency in ms from arrival to the final response (retries included).\n", cli.seeds);
    for s in &cli.scenarios {
        for (v, scn) in scenario(s, 1).iter().enumerate() {
            println!("### {}: {}\n", scn.name, scn.about);
            let multi = scn.classes.len() > 1;
            if multi {
                let heads: Vec<String> = scn
                    .classes
                    .iter()
                    .map(|c| match c.target_us {
                        Some(t) => format!("{} p99 | {} ≤ {} ms", c.name, c.name, t / 1000),
                        None => format!("{} p99 | {} ok", c.name, c.name),
                    })
                    .collect();
                println!(
                    "| policy | p50 | p99 | p99.9 | success | {} |",
                    heads.join(" | ")
                );
                println!(
                    "|---|---:|---:|---:|---:|{}",
                    "---:|".repeat(2 * scn.classes.len())
                );
            } else {
                println!("| policy | p50 | p99 | p99.9 | success | 503 attempts |");
                println!("|---|---:|---:|---:|---:|---:|");
            }
            for p in &cli.policies {
                let Some(c) = cells.get(&(s.clone(), v, p.clone())) else {
                    continue;
                };
                let mut row = format!(
                    "| {p} | {:.1} | {:.1} | {:.1} | {:.3} % |",
                    c.p50,
                    c.p99,
                    c.p999,
                    c.success * 100.0
                );
                if multi {
                    for (_, p99, on) in &c.classes {
                        row += &format!(" {p99:.1} | {:.2} % |", on * 100.0);
                    }
                } else {
                    row += &format!(" {:.2} % |", c.failed_attempt_share * 100.0);
                }
                println!("{row}");
            }
            println!();
        }
    }
}

fn print_targets(cells: &BTreeMap<(String, usize, String), Cell>) {
    let get = |s: &str, v: usize, p: &str| cells.get(&(s.to_string(), v, p.to_string()));
    let mut lines = Vec::new();
    let mut check =
        |what: String, ok: bool| lines.push(format!("- [{}] {what}", if ok { "x" } else { " " }));
    for s in ["S1", "S3"] {
        if let (Some(r), Some(rr), Some(lr), Some(o)) = (
            get(s, 0, "resonant"),
            get(s, 0, "round_robin"),
            get(s, 0, "least_request"),
            get(s, 0, "oracle"),
        ) {
            check(
                format!(
                    "{s}: round_robin p99 / resonant p99 = {:.2} (≥ 5)",
                    rr.p99 / r.p99
                ),
                rr.p99 / r.p99 >= 5.0,
            );
            check(
                format!(
                    "{s}: least_request p99 / resonant p99 = {:.2} (≥ 1.3)",
                    lr.p99 / r.p99
                ),
                lr.p99 / r.p99 >= 1.3,
            );
            check(
                format!(
                    "{s}: resonant p99 / oracle p99 = {:.2} (≤ 1.5)",
                    r.p99 / o.p99
                ),
                r.p99 / o.p99 <= 1.5,
            );
        }
    }
    if let (Some(r), Some(lr)) = (get("S0", 0, "resonant"), get("S0", 0, "least_request")) {
        check(
            format!(
                "S0: resonant p99 / least_request p99 = {:.3} (≤ 1.05)",
                r.p99 / lr.p99
            ),
            r.p99 / lr.p99 <= 1.05,
        );
    }
    if let Some(r) = get("S2", 0, "resonant") {
        check(
            format!("S2: resonant success {:.3} % (≥ 99.9 %)", r.success * 100.0),
            r.success >= 0.999,
        );
    }
    if let Some(r) = get("S4", 0, "resonant") {
        // Without avoidance 2 of 16 attempts would fail.
        let avoided = 1.0 - (1.0 - r.success) / (2.0 / 16.0);
        check(
            format!(
                "S4: resonant avoids {:.1} % of the failures (≥ 85 %)",
                avoided * 100.0
            ),
            avoided >= 0.85,
        );
    }
    if let (Some(a), Some(b)) = (get("S6", 0, "resonant"), get("S6", 2, "resonant")) {
        check(
            format!(
                "S6: p99 at 100 ms / at 1 ms = {:.3} (≤ 1.10)",
                b.p99 / a.p99
            ),
            b.p99 / a.p99 <= 1.10,
        );
    }
    if !lines.is_empty() {
        println!("### Targets\n");
        for l in lines {
            println!("{l}");
        }
    }
}
