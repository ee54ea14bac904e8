//! The demo: two small upstreams on loopback and a config routing to them,
//! so that `dao demo` shows the proxy working with no setup.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::memory::{self, Config, ConfigError};

/// A fresh random admin token for this demo run (32 hex digits).
fn admin_token() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts the demo upstreams and returns DAO's config for them, with the
/// text to print once DAO listens (`{addr}` stands for its address).
pub fn config(bind: SocketAddr, workers: Option<usize>) -> Result<(Config, String), String> {
    let a = spawn_upstream("demo-a").map_err(|e| format!("cannot start demo upstream: {e}"))?;
    let b = spawn_upstream("demo-b").map_err(|e| format!("cannot start demo upstream: {e}"))?;
    let workers = workers
        .map(|w| format!("workers = {w}\n"))
        .unwrap_or_default();
    let token = admin_token().map_err(|e| format!("cannot make an admin token: {e}"))?;
    let text = format!(
        r#"
[server]
bind = "{bind}"
{workers}
[[routes.rule]]
name = "only-a"
  [routes.rule.match]
  path_prefix = "/a/"
  [[routes.rule.upstreams]]
  name = "demo-a"
  url = "http://{a}"

[[routes.rule]]
name = "everything"
policy = "weighted"
  [[routes.rule.upstreams]]
  name = "demo-a"
  url = "http://{a}"
  weight = 3
  [[routes.rule.upstreams]]
  name = "demo-b"
  url = "http://{b}"
  weight = 1
  [routes.rule.filters]
  request_headers_add = {{ "X-DAO-Gateway" = "demo" }}

[telemetry]
prometheus_bind = "127.0.0.1:0"

[admin]
bind = "127.0.0.1:0"
token = "{token}"
"#
    );
    let config = memory::parse(&text).map_err(|e: ConfigError| e.to_string())?;
    let banner = "\
demo upstreams: demo-a, demo-b (weights 3:1 on /, demo-a only on /a/). Try:
  curl -i http://{addr}/hello            # answered by demo-a or demo-b, 3:1
  curl -i http://{addr}/a/anything       # always demo-a
  curl -N http://{addr}/stream           # chunks arrive one by one
  curl -i -d 'some body' http://{addr}/echo
  curl -s http://{telemetry}/metrics | grep http_requests_total   # Sense: Prometheus
  curl -i http://{telemetry}/health      # upstreams up/down
  daoctl --admin http://{admin} --token {token} upstreams    # admin API
Stop with Ctrl-C."
        .replace("{token}", &token);
    Ok((config, banner))
}

fn spawn_upstream(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = std::thread::Builder::new().spawn(move || {
                    let _ = serve(name, stream);
                });
            }
        })?;
    Ok(addr)
}

/// A tiny keep-alive HTTP/1.1 server: echoes what it was sent.
fn serve(name: &str, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            headers.push(l.to_string());
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let path = request_line.split(' ').nth(1).unwrap_or("/");
        if path == "/stream" {
            out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            for i in 1..=5 {
                let chunk = format!("{name}: chunk {i} of 5\n");
                write!(out, "{:x}\r\n{chunk}\r\n", chunk.len())?;
                out.flush()?;
                std::thread::sleep(Duration::from_millis(400));
            }
            out.write_all(b"0\r\n\r\n")?;
            continue;
        }
        let mut text = format!("{name} answered: {request_line}\nheaders it received:\n");
        for h in &headers {
            text.push_str("  ");
            text.push_str(h);
            text.push('\n');
        }
        if !body.is_empty() {
            text.push_str(&format!(
                "body ({} bytes): {}\n",
                body.len(),
                String::from_utf8_lossy(&body)
            ));
        }
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Upstream: {name}\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )?;
    }
}
