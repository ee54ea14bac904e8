//! dao-loadgen: command-line entry point (parse, run or overlay, report).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use dao_loadgen::cli::Args;
use dao_loadgen::plan::Plan;
use dao_loadgen::report::{self, Report};
use dao_loadgen::{hgrm, plot, run};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.overlay.is_empty() {
        load(&args)
    } else {
        overlay(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dao-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn load(args: &Args) -> Result<(), String> {
    let plan = Plan::from_args(args)?;
    let progress = match args.progress.as_str() {
        "always" => true,
        "never" => false,
        _ => std::io::stderr().is_terminal(),
    };
    let result = run::run(plan, progress)?;
    let rep = Report::new(&result, args.label.as_deref());
    print!("{}", report::text(&result, &rep, args.latency));
    if let Some(path) = &args.json {
        write(path, &rep.to_json())?;
    }
    if let Some(path) = &args.hgrm {
        write(path, &hgrm::render(&result.stats.corrected))?;
        write(
            &uncorrected_path(path),
            &hgrm::render(&result.stats.uncorrected),
        )?;
    }
    if let Some(path) = &args.plot {
        write(path, &plot::single(&rep))?;
    }
    Ok(())
}

fn overlay(args: &Args) -> Result<(), String> {
    let out = args
        .output
        .as_ref()
        .ok_or("--overlay needs -o OUTPUT.svg")?;
    let mut reports = Vec::new();
    for path in &args.overlay {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut r = Report::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if r.label.is_empty() {
            r.label = path.display().to_string();
        }
        reports.push(r);
    }
    write(out, &plot::overlay(&reports))
}

/// `a/run.hgrm` → `a/run.uncorrected.hgrm`.
fn uncorrected_path(p: &Path) -> std::path::PathBuf {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("latency");
    let name = match p.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}.uncorrected.{ext}"),
        None => format!("{stem}.uncorrected"),
    };
    p.with_file_name(name)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
