//! Tests for the HTTP/1.1 response decoder.

use super::*;

/// Feeds `input` to a fresh decoder in pieces of `step` bytes, the way reads
/// arrive, and collects the responses.
fn feed(input: &[u8], step: usize, no_body: bool) -> Result<Vec<Response>, H1Error> {
    let mut d = ResponseDecoder::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let (n, done) = d.decode(&buf, no_body)?;
            buf.drain(..n);
            match done {
                Some(r) => out.push(r),
                None => break,
            }
        }
    }
    if let Some(r) = d.eof()? {
        out.push(r);
    }
    assert!(
        buf.is_empty(),
        "bytes left over: {:?}",
        String::from_utf8_lossy(&buf)
    );
    Ok(out)
}

fn every_split(input: &[u8], no_body: bool) -> Vec<Response> {
    let whole = feed(input, input.len(), no_body).expect("decodes whole");
    for step in 1..input.len() {
        assert_eq!(
            feed(input, step, no_body).expect("decodes"),
            whole,
            "step {step}"
        );
    }
    whole
}

const OK: Response = Response {
    status: 200,
    close: false,
};

#[test]
fn content_length() {
    let r = every_split(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
    assert_eq!(r, vec![OK]);
}

#[test]
fn pipelined_responses() {
    let one = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".as_slice();
    let mut input = Vec::new();
    for _ in 0..3 {
        input.extend_from_slice(one);
    }
    input.extend_from_slice(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
    let r = every_split(&input, false);
    assert_eq!(r.len(), 4);
    assert_eq!(r[3].status, 503);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: yes\r\n\r\n\
        HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    let r = every_split(input, false);
    assert_eq!(
        r,
        vec![
            OK,
            Response {
                status: 201,
                close: false
            }
        ]
    );
}

#[test]
fn chunked_wins_over_content_length() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    assert_eq!(every_split(input, false), vec![OK]);
}

#[test]
fn head_and_bodiless_statuses() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    assert_eq!(every_split(head, true), vec![OK]);
    let no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n\
        HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n";
    let r = every_split(no_content, false);
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![204, 304]
    );
}

#[test]
fn interim_responses_are_skipped() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(every_split(input, false), vec![OK]);
}

#[test]
fn close_delimited_body() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until close";
    let r = every_split(input, false);
    assert_eq!(
        r,
        vec![Response {
            status: 200,
            close: true
        }]
    );
}

#[test]
fn connection_close_and_http10() {
    let r = every_split(
        b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    assert!(r[0].close);
    let r = every_split(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
    assert!(r[0].close);
    let r = every_split(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    assert!(!r[0].close);
}

#[test]
fn bad_input_is_rejected() {
    let cases: &[&[u8]] = &[
        b"HTTX/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n",
    ];
    for c in cases {
        assert!(
            feed(c, c.len(), false).is_err(),
            "{:?}",
            String::from_utf8_lossy(c)
        );
    }
}

#[test]
fn eof_mid_response_is_an_error() {
    let mut d = ResponseDecoder::new();
    let (n, done) = d
        .decode(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", false)
        .unwrap();
    assert!(done.is_none());
    assert!(n > 0);
    assert!(!d.is_idle());
    assert_eq!(d.eof(), Err(H1Error::UnexpectedEof));
    let mut idle = ResponseDecoder::new();
    assert!(idle.is_idle());
    assert_eq!(idle.eof(), Ok(None));
}

#[test]
fn oversized_head_is_rejected() {
    let mut d = ResponseDecoder::new();
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    while head.len() <= MAX_HEAD {
        head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert!(matches!(
        d.decode(&head, false),
        Err(H1Error::HeadTooLarge | H1Error::Head(_))
    ));
}
