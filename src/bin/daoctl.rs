//! `daoctl`: the operator's command line for DAO's admin API (status,
//! routes, upstreams, reload, snapshots, diff, rollback, profiles, drain).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use dao::admin::{render, Client, ClientError, GuardRequest};

const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";

/// Talk to a running DAO through its admin API.
#[derive(Parser)]
#[command(
    name = "daoctl",
    version,
    after_help = "Exit status: 0 done; 1 the API refused the request or failed; \
                  2 usage error; 3 cannot connect to the admin API."
)]
struct Cli {
    /// Admin API URL [default: $DAO_ADMIN, else http://127.0.0.1:9901].
    #[arg(long, global = true, value_name = "URL")]
    admin: Option<String>,
    /// Bearer token [default: $DAO_ADMIN_TOKEN]. Prefer the variable: a
    /// flag shows in the process list.
    #[arg(long, global = true, value_name = "T")]
    token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Time allowed for each read and write.
    #[arg(long, global = true, value_name = "DUR", default_value = "30s",
          value_parser = duration)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Version, uptime, epochs, workers, last reload and guard.
    Status,
    /// The routes of the running configuration.
    Routes,
    /// Every upstream with its health and live figures.
    Upstreams,
    /// Apply a configuration: the one in --file, else DAO re-reads its file.
    Reload {
        /// TOML file to send as the new configuration.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// The kept configuration snapshots (`*` marks the current one).
    Snapshots,
    /// The difference from a snapshot to the current configuration.
    Diff {
        /// Snapshot epoch.
        epoch: u64,
    },
    /// Apply a kept snapshot again.
    Rollback {
        /// Snapshot epoch.
        epoch: u64,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// What DAO learned about each upstream when it served well and badly.
    Profiles,
    /// Stop accepting connections and let in-flight requests finish.
    Drain,
}

/// A guarded change: watched for a window, rolled back if a threshold is
/// crossed.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("threshold").multiple(true)))]
struct GuardArgs {
    /// Watch the change this long and roll back if it misbehaves (e.g. 30s).
    #[arg(long, value_name = "DUR", value_parser = duration, requires = "threshold")]
    guard_window: Option<Duration>,
    /// Roll back above this share of 5xx responses (0.05 or 5%).
    #[arg(long = "max-5xx-rate", value_name = "R", value_parser = rate,
          requires = "guard_window", group = "threshold")]
    max_5xx_rate: Option<f64>,
    /// Roll back when p99 latency goes above this (e.g. 250ms).
    #[arg(long, value_name = "DUR", value_parser = duration,
          requires = "guard_window", group = "threshold")]
    max_p99: Option<Duration>,
    /// Judge only once this many responses were seen in the window.
    #[arg(long, value_name = "N", requires = "guard_window")]
    min_requests: Option<u64>,
}

impl GuardArgs {
    fn request(&self) -> Option<GuardRequest> {
        let window = self.guard_window?;
        Some(GuardRequest {
            window_ms: window.as_millis() as u64,
            max_5xx_rate: self.max_5xx_rate,
            max_p99_ms: self.max_p99.map(|d| d.as_millis() as u64),
            min_requests: self.min_requests,
        })
    }

    /// The request body: `{"guard": …}`, or none without a guard.
    fn body(&self, mut body: serde_json::Map<String, Value>) -> Option<Value> {
        if let Some(g) = self.request() {
            body.insert("guard".to_string(), json!(g));
        }
        (!body.is_empty()).then_some(Value::Object(body))
    }
}

/// A duration of at least 1 ms, written as humantime reads it.
fn duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write e.g. \"250ms\" or \"30s\""))?;
    if d < Duration::from_millis(1) {
        return Err("must be at least 1ms".to_string());
    }
    Ok(d)
}

/// A rate within 0..=1, as a fraction or a percentage.
fn rate(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let r = number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("{text:?} is not a number such as 0.05 or 5%"))?
        / scale;
    if !(0.0..=1.0).contains(&r) {
        return Err(format!("{text:?} is out of range 0..=1 (0%..=100%)"));
    }
    Ok(r)
}

/// Why a command failed.
enum Failure {
    Usage(String),
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Client(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let url = cli
        .admin
        .clone()
        .or_else(|| std::env::var("DAO_ADMIN").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| DEFAULT_ADMIN.to_string());
    let token = cli
        .token
        .clone()
        .or_else(|| std::env::var("DAO_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let has_token = token.is_some();
    let result = Client::new(&url, token)
        .map_err(Failure::from)
        .and_then(|c| run(&c.with_timeout(cli.timeout), &cli));
    match result {
        Ok(text) => {
            // A closed pipe (`daoctl upstreams | head`) is not an error.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprintln!("daoctl: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Client(e)) => {
            eprintln!("daoctl: {e}");
            if matches!(&e, ClientError::Api(a) if a.status == 401) && !has_token {
                eprintln!("  (no token given: set DAO_ADMIN_TOKEN or --token)");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs the command: what to print.
fn run(client: &Client, cli: &Cli) -> Result<String, Failure> {
    let (value, human): (Value, fn(&Value) -> String) = match &cli.command {
        Command::Status => (client.get("/api/v1/status")?, render::status),
        Command::Routes => (client.get("/api/v1/routes")?, render::routes),
        Command::Upstreams => (client.get("/api/v1/upstreams")?, render::upstreams),
        Command::Snapshots => (client.get("/api/v1/snapshots")?, render::snapshots),
        Command::Profiles => (client.get("/api/v1/profiles")?, render::profiles),
        Command::Drain => (client.post("/api/v1/drain", None)?, render::drain),
        Command::Diff { epoch } => {
            let v = client.get(&format!("/api/v1/snapshots/{epoch}"))?;
            if !cli.json && v["diff"].as_str().is_some_and(str::is_empty) {
                eprintln!("daoctl: snapshot {epoch} is the same as the current configuration");
            }
            (v, render::diff)
        }
        Command::Reload { file, guard } => {
            let mut body = serde_json::Map::new();
            if let Some(path) = file {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
                body.insert("config".to_string(), Value::String(text));
            }
            let v = client.post("/api/v1/config/reload", guard.body(body).as_ref())?;
            (v, render::change)
        }
        Command::Rollback { epoch, guard } => {
            let path = format!("/api/v1/snapshots/{epoch}/rollback");
            let v = client.post(&path, guard.body(serde_json::Map::new()).as_ref())?;
            (v, render::change)
        }
    };
    Ok(if cli.json {
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    } else {
        human(&value)
    })
}
