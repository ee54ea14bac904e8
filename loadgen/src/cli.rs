//! Cli: the command line, as clap parses it (validation lives in `plan`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// wrk2-style HTTP load generator: constant-rate open loop with coordinated
/// omission corrected latency (-R), or closed loop as fast as possible.
#[derive(Debug, Clone, Parser)]
#[command(name = "dao-loadgen", version, about, after_help = EXAMPLES)]
pub struct Args {
    /// Target URLs (http:// or https://, same scheme/host/port), rotated
    /// round robin per request.
    #[arg(value_name = "URL", required_unless_present = "overlay")]
    pub urls: Vec<String>,

    /// Connections to keep open (split over the threads).
    #[arg(short = 'c', long, default_value_t = 10)]
    pub connections: usize,

    /// Worker threads, each pinned to a core with its own monoio runtime.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,

    /// Measured duration (e.g. 10s, 1m; a bare number is seconds).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Constant total rate in requests per second (open loop, latency from
    /// the intended send time). Omit for closed loop. Accepts 10k, 1.5M.
    #[arg(short = 'R', long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Open-loop send timer: `precise` (a timerfd per thread; sends are
    /// typically tens of microseconds late) or `coarse` (monoio's 1 ms timer
    /// wheel: sends up to ~1 ms late, as wrk2 does, and that lateness is
    /// charged to the corrected latency).
    #[arg(long, default_value = "precise", value_parser = ["precise", "coarse"])]
    pub timer: String,

    /// Warm-up run before the measured duration; excluded from all stats.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// CPUs to pin the threads to, e.g. `1` or `0,2-3`; thread i takes the
    /// i-th CPU of the list (wrapping). Default: the allowed CPUs in order.
    #[arg(long, value_name = "CPUS")]
    pub pin: Option<String>,

    /// Do not pin the worker threads.
    #[arg(long, conflicts_with = "pin")]
    pub no_pin: bool,

    /// Request method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,

    /// Extra request header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Request body read from a file.
    #[arg(long, value_name = "PATH")]
    pub body_file: Option<PathBuf>,

    /// Host header value (repeatable; rotated round robin per request).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,

    /// Requests in flight per connection (HTTP/1.1 pipelining).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,

    /// One request per connection (`Connection: close`, reconnect each time).
    #[arg(long)]
    pub no_keepalive: bool,

    /// Give up on a connect or a response after this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// TLS: accept any server certificate.
    #[arg(long, short = 'k')]
    pub insecure: bool,

    /// TLS: extra trusted CA certificates (PEM).
    #[arg(long, value_name = "PEM")]
    pub cacert: Option<PathBuf>,

    /// HTTP/2: h2c with prior knowledge for http://, ALPN h2 for https://.
    #[arg(long)]
    pub http2: bool,

    /// HTTP/2: concurrent streams per connection.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,

    /// HTTP/3 (not supported yet: rejected).
    #[arg(long)]
    pub http3: bool,

    /// Print the detailed latency percentile spectrum (corrected and
    /// uncorrected side by side).
    #[arg(long, short = 'L')]
    pub latency: bool,

    /// Write a JSON report.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Write the corrected latency distribution in HdrHistogram .hgrm text
    /// format (the uncorrected one goes to PATH with `.uncorrected` inserted).
    #[arg(long, value_name = "PATH")]
    pub hgrm: Option<PathBuf>,

    /// Write an SVG plot of latency by percentile.
    #[arg(long, value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,

    /// Label of this run in JSON reports and plots.
    #[arg(long)]
    pub label: Option<String>,

    /// Overlay the latency curves of JSON reports into one SVG (with -o);
    /// no load is generated.
    #[arg(long, num_args = 1.., value_name = "JSON", requires = "output")]
    pub overlay: Vec<PathBuf>,

    /// Output SVG of --overlay.
    #[arg(short = 'o', long, value_name = "PATH.svg")]
    pub output: Option<PathBuf>,

    /// Progress line on stderr: auto (when it is a terminal), always, never.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub progress: String,
}

const EXAMPLES: &str = "Examples:
  dao-loadgen -c 64 -d 30s -R 20000 --warmup 5s --latency http://127.0.0.1:8080/
  dao-loadgen -t 2 -c 128 -d 10s http://127.0.0.1:8080/          (closed loop)
  dao-loadgen -R 5k -d 20s --json a.json --plot a.svg https://host/ -k
  dao-loadgen --overlay a.json b.json -o both.svg";

/// Parses `10s`, `250ms`, `1m30s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!("invalid duration {s:?}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses a rate: `20000`, `20k`, `1.5M`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1e3),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    let v = num
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("invalid rate {s:?}"))?
        * mult;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("rate must be positive, got {s:?}"))
    }
}

/// Parses a CPU list such as `1`, `0,1` or `0-3,6`.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("--pin {s:?}: expected CPU numbers like 1 or 0,2-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(format!("--pin {s:?}: no CPUs"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20000").unwrap(), 20000.0);
        assert_eq!(parse_rate("20k").unwrap(), 20000.0);
        assert_eq!(parse_rate("1.5M").unwrap(), 1_500_000.0);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("1").unwrap(), vec![1]);
        assert_eq!(parse_cpus("0,1").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpus("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cpus("2-1").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        let a = Args::try_parse_from(["dao-loadgen", "-R", "10k", "-c", "4", "http://h/"]).unwrap();
        assert_eq!(a.rate, Some(10_000.0));
        assert!(Args::try_parse_from(["dao-loadgen"]).is_err());
        let o = Args::try_parse_from([
            "dao-loadgen",
            "--overlay",
            "a.json",
            "b.json",
            "-o",
            "x.svg",
        ])
        .unwrap();
        assert_eq!(o.overlay.len(), 2);
        assert!(Args::try_parse_from(["dao-loadgen", "--overlay", "a.json"]).is_err());
    }
}
