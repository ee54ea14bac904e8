//! gRPC health checks' messages (`grpc.health.v1.Health/Check`): the
//! framed `HealthCheckRequest` for a service name, and the serving status
//! read back from a framed `HealthCheckResponse`. Only the one field of
//! each is handled; other fields of the answer are skipped.

use bytes::{BufMut, Bytes, BytesMut};

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// Largest answer read (the real one is a few bytes).
pub(super) const MAX_ANSWER: usize = 16 * 1024;

/// The framed request: gRPC's 5-byte prefix (not compressed, length),
/// then `HealthCheckRequest { service = 1 (string) }` (empty: the field
/// left out, as protobuf does for defaults).
pub(super) fn request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    framed.freeze()
}

/// Judges a framed answer: `Ok` when its status is `SERVING`, else why
/// not (the status's name, or what is wrong with the bytes).
pub(super) fn judge(body: &[u8]) -> Result<(), String> {
    let message = unframe(body)?;
    match serving_status(message)? {
        SERVING => Ok(()),
        0 => Err("gRPC health: UNKNOWN".into()),
        2 => Err("gRPC health: NOT_SERVING".into()),
        3 => Err("gRPC health: SERVICE_UNKNOWN".into()),
        n => Err(format!("gRPC health: status {n}")),
    }
}

/// The one message of a unary answer, without its prefix.
fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let [flag, a, b, c, d, message @ ..] = body else {
        return Err("gRPC health: no answer message".into());
    };
    if *flag != 0 {
        return Err("gRPC health: compressed answer (none was offered)".into());
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if message.len() != len {
        return Err(format!(
            "gRPC health: answer of {} bytes, its prefix says {len}",
            message.len()
        ));
    }
    Ok(message)
}

/// Field 1 (an enum) of a `HealthCheckResponse`; 0 when absent.
fn serving_status(mut message: &[u8]) -> Result<u64, String> {
    let bad = || "gRPC health: malformed answer message".to_string();
    let mut status = 0;
    while !message.is_empty() {
        let key = varint(&mut message).ok_or_else(bad)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = varint(&mut message).ok_or_else(bad)?;
                if field == 1 {
                    status = v;
                }
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                message = message.get(n..).ok_or_else(bad)?;
            }
            2 => {
                let n = varint(&mut message).ok_or_else(bad)?;
                let n = usize::try_from(n).map_err(|_| bad())?;
                message = message.get(n..).ok_or_else(bad)?;
            }
            _ => return Err(bad()),
        }
    }
    Ok(status)
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Takes one varint off the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_framed_protobuf() {
        assert_eq!(&request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &request("svc")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']
        );
        // A name past 127 bytes takes a two-byte length.
        let long = "x".repeat(200);
        let r = request(&long);
        assert_eq!(&r[..8], &[0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
        assert_eq!(r.len(), 5 + 203);
    }

    #[test]
    fn answers_are_judged_by_their_status() {
        assert_eq!(judge(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(()));
        let not = judge(&[0, 0, 0, 0, 2, 0x08, 2]).unwrap_err();
        assert!(not.ends_with("NOT_SERVING"), "{not}");
        // An empty message: the default, UNKNOWN.
        let unknown = judge(&[0, 0, 0, 0, 0]).unwrap_err();
        assert!(unknown.ends_with("UNKNOWN"), "{unknown}");
        // Unknown fields of every wire type are skipped.
        let other = [
            0x10, 0x96, 0x01, // field 2 varint
            0x1a, 2, b'h', b'i', // field 3 bytes
            0x25, 1, 2, 3, 4, // field 4 fixed32
            0x29, 1, 2, 3, 4, 5, 6, 7, 8, // field 5 fixed64
            0x08, 1, // field 1 SERVING
        ];
        let mut framed = vec![0, 0, 0, 0, other.len() as u8];
        framed.extend_from_slice(&other);
        assert_eq!(judge(&framed), Ok(()));
        for bad in [
            &[][..],
            &[0, 0, 0, 0],
            &[0, 0, 0, 0, 3, 0x08, 1],
            &[1, 0, 0, 0, 2, 0x08, 1],
            &[0, 0, 0, 0, 2, 0x08, 0x81],
            &[0, 0, 0, 0, 2, 0x0a, 5],
            &[0, 0, 0, 0, 1, 0x0b],
        ] {
            assert!(judge(bad).is_err(), "{bad:?}");
        }
    }
}
