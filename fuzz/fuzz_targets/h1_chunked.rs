//! Fuzz target: the chunked decoder fed in two arbitrary pieces must agree
//! with itself fed in one.
#![no_main]

use dao::proto::h1::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

fn run(parts: &[&[u8]]) -> Option<(Vec<u8>, usize)> {
    let mut d = ChunkedDecoder::default();
    let mut data = Vec::new();
    let mut used = 0;
    for part in parts {
        if d.is_done() {
            break;
        }
        let p = d.feed(part, |r| data.extend_from_slice(&part[r])).ok()?;
        used += p.consumed;
    }
    d.is_done().then_some((data, used))
}

fuzz_target!(|input: (u16, &[u8])| {
    let (split, data) = input;
    let split = (split as usize).min(data.len());
    let whole = run(&[data]);
    let pieces = run(&[&data[..split], &data[split..]]);
    assert_eq!(whole, pieces);
});
