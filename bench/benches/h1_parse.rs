//! Request-head parsing on the hot path: DAO's in-place parser (httparse
//! plus framing and smuggling checks, spans into the read buffer) against
//! monoio-http's `RequestHeadDecoder` (httparse, then an `http::Request`
//! with a `HeaderMap`). Criterion reports the time per head for each.
//!
//!   cargo bench -p dao-bench --bench h1_parse
//!   cargo bench -p dao-bench --bench h1_parse -- --quick

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
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

fn h1_parse(c: &mut Criterion) {
    for (name, request) in [
        ("browser-like head (10 headers)", REQUEST),
        ("wrk's head (1 header)", WRK),
    ] {
        let mut group = c.benchmark_group(format!("h1_parse/{name}"));
        group.bench_function("dao", |b| {
            let mut head = RequestHead::default();
            b.iter(|| {
                let r = parse_request(black_box(request), &mut head);
                black_box((&r, head.host, head.body));
            });
        });
        group.bench_function("monoio-http", |b| {
            let mut decoder = RequestHeadDecoder;
            // The decoder consumes its input: each iteration gets a fresh
            // buffer, filled outside the timed part. The decoded head (and
            // its HeaderMap) is dropped inside it, as a server would.
            b.iter_batched_ref(
                || BytesMut::from(request),
                |buf| match decoder.decode(black_box(buf)) {
                    Ok(Decoded::Some(head)) => drop(black_box(head)),
                    _ => panic!("monoio-http failed to decode"),
                },
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

criterion_group!(benches, h1_parse);
criterion_main!(benches);
