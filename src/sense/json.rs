//! JSON string writing for the access log and /health: quotes, escapes,
//! and bytes that are not ASCII written as `\u00XX`, so the output is
//! valid UTF-8 whatever a client sent.

/// Appends `s` as a JSON string (quotes included).
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends raw bytes as a JSON string (quotes included).
pub(crate) fn push_bytes(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &c in b {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(c),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 15)],
            ]),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd é");
        assert_eq!(s, r#""a\"b\\c\u000ad é""#);
        let mut v = Vec::new();
        push_bytes(&mut v, b"/p\"\\\x01\xff");
        assert_eq!(v, br#""/p\"\\\u0001\u00ff""#);
    }
}
