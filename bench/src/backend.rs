//! dao-bench-backend: a fast keep-alive HTTP/1.1 origin for benchmarks.
//!
//! One pinned monoio thread; answers every request (pipelined ones too)
//! with a fixed 200 response of `--size` bytes, and closes the connection
//! after answering a request that carries `Connection: close` (so a client
//! asking for a new connection per request gets one). `--delay-ms N`
//! holds every response N ms (a slow upstream). Prints its address on the
//! first line of stdout.

use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

struct Args {
    addr: SocketAddr,
    cpu: Option<usize>,
    size: usize,
    delay_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:0".parse().map_err(|_| "addr")?,
        cpu: None,
        size: 13,
        delay_ms: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => args.addr = value.parse().map_err(|e| format!("--addr: {e}"))?,
            "--cpu" => args.cpu = Some(value.parse().map_err(|e| format!("--cpu: {e}"))?),
            "--size" => args.size = value.parse().map_err(|e| format!("--size: {e}"))?,
            "--delay-ms" => {
                args.delay_ms = value.parse().map_err(|e| format!("--delay-ms: {e}"))?
            }
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--addr, --cpu, --size, --delay-ms)"
                ))
            }
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dao-bench-backend: {e}");
            std::process::exit(2);
        }
    };
    if let Some(cpu) = args.cpu {
        if let Some(core) =
            core_affinity::get_core_ids().and_then(|ids| ids.into_iter().find(|c| c.id == cpu))
        {
            core_affinity::set_for_current(core);
        }
    }
    let body = if args.size == 13 {
        b"Hello, World!".to_vec()
    } else {
        vec![b'x'; args.size]
    };
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let response: &'static [u8] = Box::leak(response.into_boxed_slice());
    let delay = std::time::Duration::from_millis(args.delay_ms);
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(args.addr).expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                monoio::spawn(serve(stream, response, delay));
            }
        }
    });
}

async fn serve(mut stream: TcpStream, response: &'static [u8], delay: std::time::Duration) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let len = buf.len();
        let cap = buf.capacity();
        let (res, slice) = stream
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..cap))
            .await;
        buf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // One response per complete request head (bench requests carry no body).
        let mut done = 0;
        let mut close = false;
        while !close {
            let Some(end) = find_head_end(&buf[done..]) else {
                break;
            };
            out.extend_from_slice(response);
            close = wants_close(&buf[done..done + end]);
            done += end;
        }
        buf.drain(..done);
        if buf.len() == buf.capacity() {
            return; // a head larger than the buffer: not a benchmark request
        }
        if !out.is_empty() {
            if !delay.is_zero() {
                monoio::time::sleep(delay).await;
            }
            let (res, o) = stream.write_all(out).await;
            out = o;
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if close {
            return;
        }
    }
}

/// Whether a request head asks to close the connection after its response.
fn wants_close(head: &[u8]) -> bool {
    const CLOSE: &[u8] = b"\r\nconnection: close\r\n";
    head.windows(CLOSE.len())
        .any(|w| w.eq_ignore_ascii_case(CLOSE))
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}
