//! Request-head parsing on the hot path: DAO's in-place parser (httparse
//! plus framing and smuggling checks, spans into the read buffer) against
//! monoio-http's `RequestHeadDecoder` (httparse, then an `http::Request`
//! with a `HeaderMap`). Prints nanoseconds per head for each and the ratio.
//!
//!   cargo bench -p dao-bench --bench h1_parse
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use dao::proto::h1::{parse_request, RequestHead};
use monoio_codec::{Decoded, Decoder};
use monoio_http::h1::codec::decoder::RequestHeadDecoder;

/// A typical browser-ish request head (what wrk sends is smaller).
const REQUEST: &[u8] = b"GET /api/v1/items?page=2&sort=desc HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://www.example.com/items\r\n\
Cookie: session=0123456789abcdef; theme=dark\r\n\
Connection: keep-alive\r\n\
X-Forwarded-For: 203.0.113.7\r\n\r\n";

const WRK: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

const BATCH: usize = 1000;

fn dao(request: &[u8], rounds: usize) -> f64 {
    let mut head = RequestHead::default();
    let started = Instant::now();
    for _ in 0..rounds * BATCH {
        let r = parse_request(black_box(request), &mut head);
        black_box((&r, head.host, head.body));
    }
    started.elapsed().as_nanos() as f64 / (rounds * BATCH) as f64
}

fn monoio_http(request: &[u8], rounds: usize) -> f64 {
    let mut decoder = RequestHeadDecoder;
    let mut total = 0u128;
    // The decoder consumes its input: refill a buffer with a batch of
    // pipelined heads outside the timed part.
    let mut buf = BytesMut::with_capacity(request.len() * BATCH);
    for _ in 0..rounds {
        buf.clear();
        for _ in 0..BATCH {
            buf.extend_from_slice(request);
        }
        let started = Instant::now();
        for _ in 0..BATCH {
            match decoder.decode(black_box(&mut buf)) {
                Ok(Decoded::Some(head)) => {
                    black_box(&head);
                }
                _ => panic!("monoio-http failed to decode"),
            }
        }
        total += started.elapsed().as_nanos();
    }
    total as f64 / (rounds * BATCH) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    for (name, request) in [
        ("browser-like head (10 headers)", REQUEST),
        ("wrk's head (1 header)", WRK),
    ] {
        // Warm up, then medians of 9 runs of 200k heads each.
        dao(request, 50);
        monoio_http(request, 50);
        let d = median((0..9).map(|_| dao(request, 200)).collect());
        let m = median((0..9).map(|_| monoio_http(request, 200)).collect());
        println!(
            "{name}: dao {d:.1} ns/head, monoio-http {m:.1} ns/head, monoio-http / dao = {:.2}",
            m / d
        );
    }
}
