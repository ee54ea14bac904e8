//! Fuzz target: the request head parser and the upstream head writer on
//! arbitrary bytes. Every span must stay inside the head.
#![no_main]

use dao::proto::h1::head::{write_request_head, Forwarded};
use dao::proto::h1::{parse_request, RequestHead};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut head = RequestHead::default();
    if let Ok(Some(())) = parse_request(data, &mut head) {
        assert!(head.head_len <= data.len());
        for h in &head.headers {
            assert!(h.name.end as usize <= head.head_len && h.value.end as usize <= head.head_len);
        }
        let mut out = Vec::new();
        let fwd = Forwarded { client_ip: b"127.0.0.1", proto: b"http", extra: b"", default_host: b"u:80" };
        write_request_head(&mut out, data, &head, &fwd);
        // What goes upstream must itself parse.
        let mut again = RequestHead::default();
        assert!(matches!(parse_request(&out, &mut again), Ok(Some(()))), "{:?}", String::from_utf8_lossy(&out));
        assert_eq!(again.body, head.body);
    }
});
