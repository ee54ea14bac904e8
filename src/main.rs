//! The `dao` command: run the proxy, check a config, or start the demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use dao::memory::{self, Config};
use dao::runtime::{signals, Options, Server};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// DAO: a thread-per-core edge reverse proxy on io_uring.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file to run with.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Stop after this many responses on one worker (profiling runs).
    #[arg(long, hide = true, global = true)]
    exit_after_requests: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration: field errors (exit 1) or a summary (exit 0).
    Check,
    /// Start DAO on loopback in front of two built-in demo upstreams.
    Demo {
        /// Address DAO listens on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DAO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(cli.config),
        Some(Command::Demo { bind, workers }) => match dao::demo::config(bind, workers) {
            Ok((config, banner)) => serve(config, None, Some(banner), cli.exit_after_requests),
            Err(e) => {
                eprintln!("dao demo: {e}");
                ExitCode::FAILURE
            }
        },
        None => {
            let Some(path) = cli.config else {
                eprintln!("dao: --config PATH is required (or try `dao demo`)");
                return ExitCode::from(2);
            };
            match memory::load_file(&path) {
                Ok(config) => serve(config, Some(path), None, cli.exit_after_requests),
                Err(e) => {
                    eprintln!("dao: invalid configuration {}:\n{e}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `https` for a TLS listener, `http` otherwise.
fn scheme(l: &memory::Listener) -> &'static str {
    if l.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("dao check: --config PATH is required");
        return ExitCode::from(2);
    };
    match memory::load_file(&path) {
        Ok(c) => {
            println!("{}: ok", path.display());
            let listen: Vec<String> = c
                .listeners
                .iter()
                .map(|l| format!("{}://{}", scheme(l), l.bind))
                .collect();
            println!(
                "  listen {} with {} worker(s); {} route(s), {} upstream address(es)",
                listen.join(", "),
                c.server.workers,
                c.routes.len(),
                c.pools.len()
            );
            for (i, l) in c.listeners.iter().enumerate() {
                if let Some(t) = &l.tls {
                    let names = t.certificates.names();
                    println!(
                        "  listener {i} TLS: {} certificate(s) for {}; ALPN {}; from TLS {}; client certificates {:?}{}{}",
                        t.certificates.len(),
                        if names.is_empty() { "any name (default only)".to_string() } else { names.join(", ") },
                        t.alpn.join(", "),
                        match t.min_version {
                            memory::TlsVersion::Tls12 => "1.2",
                            memory::TlsVersion::Tls13 => "1.3",
                        },
                        t.client_auth,
                        t.client_cert_header.as_ref().map_or(String::new(), |h| format!(" (upstreams get {h})")),
                        if t.sni_strict { "; strict SNI" } else { "" },
                    );
                }
            }
            for r in &c.routes {
                let ups: Vec<String> = r
                    .upstreams
                    .iter()
                    .map(|u| format!("{} ({}, weight {})", u.name, u.addr, u.weight))
                    .collect();
                println!(
                    "  route {:?}: {} {} [{}] → {}",
                    r.name,
                    r.host,
                    r.path_prefix,
                    r.policy,
                    ups.join(", ")
                );
                if let Some(hc) = &r.health_check {
                    println!(
                        "    health check: GET {} every {} (timeout {}, up after {}, down after {}, status {}-{})",
                        hc.path,
                        humantime::format_duration(hc.interval),
                        humantime::format_duration(hc.timeout),
                        hc.healthy_threshold,
                        hc.unhealthy_threshold,
                        hc.expected_status.0,
                        hc.expected_status.1
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid configuration", path.display());
            for err in &e.errors {
                if err.path.is_empty() {
                    eprintln!("  {}", err.message);
                } else {
                    eprintln!("  {}: {}", err.path, err.message);
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn serve(
    config: Config,
    path: Option<PathBuf>,
    banner: Option<String>,
    exit_after: Option<u64>,
) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signals::install(&stop).and_then(|()| signals::install_reload(&hup)) {
        eprintln!("dao: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let workers = config.server.workers;
    let listeners = config.listeners.clone();
    let opts = Options {
        stop: Some(stop),
        exit_after,
        config_path: path,
        hup: Some(hup),
    };
    let server = match Server::start_opts(config, opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dao: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Tests and scripts read the (first) address from this line.
    for (l, addr) in listeners.iter().zip(server.listener_addrs()) {
        println!(
            "dao listening on {}://{addr} ({workers} worker(s))",
            scheme(l)
        );
    }
    let telemetry = server.telemetry_addr();
    if let Some(t) = telemetry {
        println!("telemetry on http://{t} (/metrics, /health)");
    }
    if let Some(a) = server.admin_addr() {
        println!("admin API on http://{a} (/api/v1/…; daoctl --admin http://{a})");
    }
    if let Some(b) = banner {
        let t = telemetry.map(|t| t.to_string()).unwrap_or_default();
        let a = server
            .admin_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        println!(
            "{}",
            b.replace("{addr}", &server.local_addr().to_string())
                .replace("{telemetry}", &t)
                .replace("{admin}", &a)
        );
    }
    let stats = server.wait();
    let opened: u64 = stats.iter().map(|s| s.opened).sum();
    let reused: u64 = stats.iter().map(|s| s.reused).sum();
    tracing::info!(
        upstream_connections_opened = opened,
        upstream_requests_on_reused = reused,
        "stopped"
    );
    ExitCode::SUCCESS
}
