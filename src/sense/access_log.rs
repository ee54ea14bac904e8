//! Access logs: one JSON line per request, appended to the worker's own
//! buffer (no lock, no syscall on the request path) and handed to a
//! background writer thread every merge interval or when the buffer fills.
//! Also the request ids: `x-request-id` is generated when the client sent
//! none.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use super::json::push_bytes;
use crate::hex::hex16;
use crate::memory::LogDestination;

/// A worker's buffer is handed over once it holds this much.
const FLUSH_AT: usize = 64 * 1024;

/// Starts the writer thread; it ends once every sender is dropped, after
/// writing what it was sent.
pub fn start(dest: &LogDestination) -> std::io::Result<(JoinHandle<()>, Sender<Vec<u8>>)> {
    let mut out: Box<dyn Write + Send> = match dest {
        LogDestination::Stdout => Box::new(std::io::stdout()),
        LogDestination::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
                })?,
        ),
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let handle = std::thread::Builder::new()
        .name("dao-access-log".into())
        .spawn(move || {
            let mut failed = false;
            for chunk in rx {
                let r = out.write_all(&chunk).and_then(|()| out.flush());
                if let Err(e) = r {
                    if !failed {
                        tracing::error!(error = %e, "cannot write the access log");
                    }
                    failed = true;
                }
            }
        })?;
    Ok((handle, tx))
}

/// One worker's side of the access log.
#[derive(Debug)]
pub struct AccessLog {
    buf: RefCell<Vec<u8>>,
    tx: RefCell<Option<Sender<Vec<u8>>>>,
}

/// What one line says about its request (the request's own part —
/// request id, method, path — was written by `begin_line`).
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// Route name (`-` when none matched).
    pub route: &'a str,
    /// Upstream name (`-` when none was used).
    pub upstream: &'a str,
    /// Status sent to the client (499: the client left first).
    pub status: u16,
    /// From the complete request head to the end of the response.
    pub duration_us: u64,
    /// Bytes written to the client.
    pub bytes: u64,
    /// The client's address.
    pub client: &'a str,
}

impl AccessLog {
    /// A worker's log, writing through `tx`.
    pub fn new(tx: Sender<Vec<u8>>) -> AccessLog {
        AccessLog {
            buf: RefCell::new(Vec::with_capacity(FLUSH_AT)),
            tx: RefCell::new(Some(tx)),
        }
    }

    /// Writes the request's own fields into `scratch` (kept by the
    /// connection until the response ends, since the head's bytes are gone
    /// by then).
    pub fn begin_line(scratch: &mut Vec<u8>, request_id: &[u8], method: &[u8], path: &[u8]) {
        scratch.clear();
        scratch.extend_from_slice(b",\"request_id\":");
        push_bytes(scratch, request_id);
        scratch.extend_from_slice(b",\"method\":");
        push_bytes(scratch, method);
        scratch.extend_from_slice(b",\"path\":");
        push_bytes(scratch, path);
    }

    /// Appends a finished request's line.
    pub fn write(&self, scratch: &[u8], l: &Line<'_>) {
        let mut buf = self.buf.borrow_mut();
        let b = &mut *buf;
        b.extend_from_slice(b"{\"timestamp\":\"");
        rfc3339(b, SystemTime::now());
        b.extend_from_slice(b"\",\"level\":\"info\",\"service\":\"dao\",\"message\":\"request\"");
        b.extend_from_slice(scratch);
        b.extend_from_slice(b",\"route\":");
        push_bytes(b, l.route.as_bytes());
        b.extend_from_slice(b",\"upstream\":");
        push_bytes(b, l.upstream.as_bytes());
        let mut n = itoa::Buffer::new();
        b.extend_from_slice(b",\"status\":");
        b.extend_from_slice(n.format(l.status).as_bytes());
        b.extend_from_slice(b",\"duration_us\":");
        b.extend_from_slice(n.format(l.duration_us).as_bytes());
        b.extend_from_slice(b",\"bytes\":");
        b.extend_from_slice(n.format(l.bytes).as_bytes());
        b.extend_from_slice(b",\"client\":");
        push_bytes(b, l.client.as_bytes());
        b.extend_from_slice(b"}\n");
        if b.len() >= FLUSH_AT {
            drop(buf);
            self.flush();
        }
    }

    /// Hands what is buffered to the writer.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        if let Some(tx) = &*self.tx.borrow() {
            let full = std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_AT));
            // The writer is gone only at exit; the lines go with it.
            let _ = tx.send(full);
        } else {
            buf.clear();
        }
    }

    /// Flushes and lets go of the writer (at exit).
    pub fn close(&self) {
        self.flush();
        self.tx.borrow_mut().take();
    }
}

/// Appends `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let two = |out: &mut Vec<u8>, v: u64| {
        out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8])
    };
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(y).as_bytes());
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, rem / 3600);
    out.push(b':');
    two(out, rem / 60 % 60);
    out.push(b':');
    two(out, rem % 60);
    let ms = since.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by eras
/// of 400 years (146 097 days), whose day-of-era arithmetic is exact.
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe as i64 + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Generates request ids: 32 hex digits, a random per-worker prefix and a
/// counter, unique within the process and unlikely to repeat across runs.
#[derive(Debug)]
pub struct RequestIds {
    /// The per-worker random half, already in hex.
    prefix: [u8; 16],
    next: Cell<u64>,
}

impl RequestIds {
    /// A generator for `worker`, seeded from the time and the process id.
    pub fn new(worker: usize) -> RequestIds {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ (worker as u64).rotate_left(48);
        RequestIds {
            prefix: hex16(mix(seed)),
            next: Cell::new(0),
        }
    }

    /// The next id: the worker's prefix, then the counter, 32 hex digits.
    pub fn next(&self) -> [u8; 32] {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&self.prefix);
        id[16..].copy_from_slice(&hex16(n));
        id
    }
}

/// A 64-bit finaliser (xor-shift-multiply) spreading a seed's bits.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_780), (2026, 11, 23));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let mut out = Vec::new();
        rfc3339(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(1_795_435_200_007),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "2026-11-23T12:00:00.007Z");
    }

    #[test]
    fn ids_are_hex_and_distinct() {
        let ids = RequestIds::new(1);
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a[..16], b[..16]);
        assert!(a.iter().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(&a[16..], b"0000000000000000");
        assert_eq!(&b[16..], b"0000000000000001");
        assert_ne!(RequestIds::new(2).next()[..16], a[..16]);
    }

    #[test]
    fn lines_are_json() {
        let (tx, rx) = mpsc::channel();
        let log = AccessLog::new(tx);
        let mut scratch = Vec::new();
        AccessLog::begin_line(&mut scratch, b"abc", b"GET", b"/a\"b");
        log.write(
            &scratch,
            &Line {
                route: "r",
                upstream: "u",
                status: 200,
                duration_us: 12,
                bytes: 34,
                client: "127.0.0.1",
            },
        );
        log.flush();
        let text = String::from_utf8(rx.recv().unwrap()).unwrap();
        assert!(text.ends_with("\"request_id\":\"abc\",\"method\":\"GET\",\"path\":\"/a\\\"b\",\"route\":\"r\",\"upstream\":\"u\",\"status\":200,\"duration_us\":12,\"bytes\":34,\"client\":\"127.0.0.1\"}\n"), "{text}");
        assert!(text.starts_with("{\"timestamp\":\""));
    }
}
