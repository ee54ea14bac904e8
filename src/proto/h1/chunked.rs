//! Incremental, strict decoder of the chunked transfer coding (RFC 9112
//! §7.1). It validates framing as bytes stream through and reports where
//! chunk data lies, so the proxy can forward the bytes unchanged (or only
//! the data, for an HTTP/1.0 client) and knows exactly where the body ends.

/// Longest chunk-size line (size plus extensions) we accept.
const MAX_LINE: u32 = 4096;
/// Largest trailer section we accept.
const MAX_TRAILERS: u32 = 16 * 1024;

/// Why a chunked body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk size that is not hex, is empty, or overflows.
    #[error("invalid chunk size")]
    Size,
    /// An invalid chunk extension.
    #[error("invalid chunk extension")]
    Extension,
    /// A missing CRLF where one is required (bare CR or LF included).
    #[error("invalid line ending in chunked body")]
    LineEnding,
    /// An invalid or oversized trailer section.
    #[error("invalid trailer section")]
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { digits: u8 },
    Ext(Ext),
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

/// Where a chunk extension parse stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// After the size or a value: whitespace, `;` or the line end.
    AfterValue,
    /// After `;`: whitespace or a name.
    BeforeName,
    Name,
    /// Whitespace after a name: `=`, `;` or the line end.
    AfterName,
    /// After `=`: whitespace, a token or a quoted string.
    BeforeValue,
    Token,
    Quoted,
    QuotedEscape,
}

/// Decoder state carried across reads.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    line: u32,
    trailers: u32,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            line: 0,
            trailers: 0,
        }
    }
}

/// What one call to [`ChunkedDecoder::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that belong to the body.
    pub consumed: usize,
    /// The body ended within those bytes.
    pub done: bool,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl ChunkedDecoder {
    /// Whether the final chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds the next bytes of the body. `on_data` receives the ranges of
    /// `input` that are chunk data. Bytes after the end of the body are not
    /// consumed.
    #[inline]
    pub fn feed(
        &mut self,
        input: &[u8],
        on_data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<Progress, ChunkError> {
        self.feed_parts(input, on_data, |_| {})
    }

    /// As [`ChunkedDecoder::feed`]; `on_trailer` also receives the ranges
    /// of `input` that belong to the trailer section's field lines (each
    /// with its CRLF; the final blank line is not reported). A section
    /// split across calls comes in several ranges.
    pub fn feed_parts(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(std::ops::Range<usize>),
        mut on_trailer: impl FnMut(std::ops::Range<usize>),
    ) -> Result<Progress, ChunkError> {
        let mut i = 0;
        // Where the trailer bytes of this call start, while in them.
        let mut trailer: Option<usize> = None;
        while i < input.len() {
            if self.state == State::Data {
                let n = (input.len() - i).min(self.size as usize);
                on_data(i..i + n);
                i += n;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            let was = self.state;
            self.state = self.step(b)?;
            match (was, self.state) {
                // The blank line that ends the section is not a field.
                (State::TrailerStart, State::FinalLf) => {}
                (State::TrailerStart | State::Trailer | State::TrailerLf, _) => {
                    trailer.get_or_insert(i - 1);
                }
                (_, _) => {}
            }
            if let (Some(t), State::FinalLf) = (trailer, self.state) {
                on_trailer(t..i - 1);
                trailer = None;
            }
            if self.state == State::Done {
                return Ok(Progress {
                    consumed: i,
                    done: true,
                });
            }
        }
        if let Some(t) = trailer {
            on_trailer(t..i);
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    fn step(&mut self, b: u8) -> Result<State, ChunkError> {
        Ok(match self.state {
            State::Size { digits } => {
                self.line += 1;
                match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 16 {
                            return Err(ChunkError::Size);
                        }
                        let v = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.size = (self.size << 4) | v;
                        State::Size { digits: digits + 1 }
                    }
                    _ if digits == 0 => return Err(ChunkError::Size),
                    b'\r' => State::SizeLf,
                    b';' => State::Ext(Ext::BeforeName),
                    b' ' | b'\t' => State::Ext(Ext::AfterValue),
                    _ => return Err(ChunkError::Size),
                }
            }
            State::Ext(at) => {
                self.line += 1;
                if self.line > MAX_LINE {
                    return Err(ChunkError::Extension);
                }
                // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
                let ws = b == b' ' || b == b'\t';
                let next = match (at, b) {
                    (Ext::Quoted, b'"') => Ext::AfterValue,
                    (Ext::Quoted, b'\\') => Ext::QuotedEscape,
                    (Ext::Quoted | Ext::QuotedEscape, 0..=8 | 10..=31 | 127) => {
                        return Err(ChunkError::Extension)
                    }
                    (Ext::Quoted | Ext::QuotedEscape, _) => Ext::Quoted,
                    (Ext::AfterValue | Ext::Name | Ext::AfterName | Ext::Token, b'\r') => {
                        return Ok(State::SizeLf)
                    }
                    (Ext::AfterValue | Ext::Name | Ext::AfterName | Ext::Token, b';') => {
                        Ext::BeforeName
                    }
                    (Ext::Name | Ext::AfterName, b'=') => Ext::BeforeValue,
                    (Ext::Name, _) if ws => Ext::AfterName,
                    (Ext::Token, _) if ws => Ext::AfterValue,
                    (Ext::AfterValue | Ext::BeforeName | Ext::AfterName | Ext::BeforeValue, _)
                        if ws =>
                    {
                        at
                    }
                    (Ext::BeforeName | Ext::Name, c) if is_tchar(c) => Ext::Name,
                    (Ext::BeforeValue | Ext::Token, c) if is_tchar(c) => Ext::Token,
                    (Ext::BeforeValue, b'"') => Ext::Quoted,
                    _ => return Err(ChunkError::Extension),
                };
                State::Ext(next)
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::LineEnding);
                }
                self.line = 0;
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size { digits: 0 },
            State::DataCr | State::DataLf => return Err(ChunkError::LineEnding),
            State::TrailerStart | State::Trailer => {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err(ChunkError::Trailer);
                }
                match b {
                    b'\r' if self.state == State::TrailerStart => State::FinalLf,
                    b'\r' => State::TrailerLf,
                    b'\n' | 0 => return Err(ChunkError::Trailer),
                    // obs-fold is not allowed in trailers either.
                    b' ' | b'\t' if self.state == State::TrailerStart => {
                        return Err(ChunkError::Trailer)
                    }
                    _ => State::Trailer,
                }
            }
            State::TrailerLf if b == b'\n' => State::TrailerStart,
            State::TrailerLf => return Err(ChunkError::LineEnding),
            State::FinalLf if b == b'\n' => State::Done,
            State::FinalLf => return Err(ChunkError::LineEnding),
            State::Data | State::Done => unreachable!("handled by feed"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at every possible point and returns the data.
    fn decode_split(input: &[u8], split: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::default();
        let mut data = Vec::new();
        let mut used = 0;
        for part in [&input[..split], &input[split..]] {
            if d.is_done() {
                break;
            }
            let p = d.feed(part, |r| data.extend_from_slice(&part[r]))?;
            used += p.consumed;
        }
        assert!(d.is_done(), "not done");
        Ok((data, used))
    }

    #[test]
    fn decodes_at_every_split() {
        let body = b"5;name=\"v\\\"x\"\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..=body.len() {
            let (data, used) = decode_split(body, split).unwrap();
            assert_eq!(data, b"hello world");
            assert_eq!(used, body.len() - 4, "split {split}");
        }
    }

    #[test]
    fn trailer_ranges_at_every_split() {
        let body = b"3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nX-T: a b\r\n\r\nNEXT";
        for split in 0..=body.len() {
            let mut d = ChunkedDecoder::default();
            let (mut data, mut trailers, mut used) = (Vec::new(), Vec::new(), 0);
            for part in [&body[..split], &body[split..]] {
                if d.is_done() {
                    break;
                }
                let p = d
                    .feed_parts(
                        part,
                        |r| data.extend_from_slice(&part[r]),
                        |r| trailers.extend_from_slice(&part[r]),
                    )
                    .unwrap();
                used += p.consumed;
            }
            assert!(d.is_done(), "split {split}");
            assert_eq!(used, body.len() - 4);
            assert_eq!(data, b"abc");
            assert_eq!(trailers, b"Grpc-Status: 0\r\nX-T: a b\r\n", "split {split}");
        }
        let mut d = ChunkedDecoder::default();
        d.feed_parts(b"0\r\n\r\n", |_| {}, |_| panic!("no trailers"))
            .unwrap();
        assert!(d.is_done());
    }

    #[test]
    fn extension_grammar() {
        let ok: &[&[u8]] = &[
            b"3;a\r\n",
            b"3 ;a\r\n",
            b"3; a = b ;c\r\n",
            b"3;a=\"q \\\" x\"\r\n",
            b"3 \r\n",
        ];
        for line in ok {
            let mut input = line.to_vec();
            input.extend_from_slice(b"abc\r\n0\r\n\r\n");
            decode_split(&input, 0)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(line)));
        }
        let bad: &[&[u8]] = &[
            b"3;bad ext\r\n",
            b"3;=v\r\n",
            b"3;a=\r\n",
            b"3;a=b c\r\n",
            b"3;\r\n",
            b"3;a=\"open\r\n",
        ];
        for line in bad {
            let mut d = ChunkedDecoder::default();
            assert!(
                d.feed(line, |_| {}).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let bad: &[&[u8]] = &[
            b"x\r\n",
            b"\r\n",
            b"-1\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5;a\x01b\r\n",
            b"5;a\nb\r\n",
            b"0\r\nX: y\n\r\n",
            b"0\r\nX: 1\r\n folded\r\n\r\n",
            b"0\r\n\r\r",
        ];
        for input in bad {
            let mut d = ChunkedDecoder::default();
            assert!(
                d.feed(input, |_| {}).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn large_sizes_need_data() {
        let mut d = ChunkedDecoder::default();
        let p = d.feed(b"ffffffff\r\nab", |_| {}).unwrap();
        assert_eq!(p.consumed, 12);
        assert!(!p.done);
    }
}
