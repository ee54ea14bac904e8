//! Body progress: where a message body ends in the bytes that stream by,
//! whatever its framing, so bodies are forwarded as they arrive and the
//! bytes after them (a pipelined request) are left alone.

use std::ops::Range;

use super::{BodyKind, ChunkError, ChunkedDecoder};

/// How much of a body is still to come.
#[derive(Debug, Clone)]
pub enum BodyState {
    /// Nothing more.
    Done,
    /// This many bytes more.
    Length(u64),
    /// Chunked, decoder in progress.
    Chunked(ChunkedDecoder),
    /// Everything until the peer closes.
    UntilClose,
}

impl BodyState {
    /// The state at the start of a body of `kind`.
    pub fn new(kind: BodyKind) -> BodyState {
        match kind {
            BodyKind::Empty | BodyKind::Length(0) => BodyState::Done,
            BodyKind::Length(n) => BodyState::Length(n),
            BodyKind::Chunked => BodyState::Chunked(ChunkedDecoder::default()),
            BodyKind::UntilClose => BodyState::UntilClose,
        }
    }

    /// Whether the whole body has gone by.
    pub fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }

    /// Takes the body's bytes from the front of `input`; returns how many
    /// belong to the body. `on_data` gets the ranges that are payload (all
    /// of them, except chunk framing).
    #[inline]
    pub fn advance(
        &mut self,
        input: &[u8],
        on_data: impl FnMut(Range<usize>),
    ) -> Result<usize, ChunkError> {
        self.advance_parts(input, on_data, |_| {})
    }

    /// As [`BodyState::advance`]; `on_trailer` gets the ranges of a chunked
    /// body's trailer field lines (see [`ChunkedDecoder::feed_parts`]).
    pub fn advance_parts(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(Range<usize>),
        on_trailer: impl FnMut(Range<usize>),
    ) -> Result<usize, ChunkError> {
        match self {
            BodyState::Done => Ok(0),
            BodyState::Length(left) => {
                let n = (*left).min(input.len() as u64) as usize;
                on_data(0..n);
                *left -= n as u64;
                if *left == 0 {
                    *self = BodyState::Done;
                }
                Ok(n)
            }
            BodyState::Chunked(decoder) => {
                let p = decoder.feed_parts(input, on_data, on_trailer)?;
                if p.done {
                    *self = BodyState::Done;
                }
                Ok(p.consumed)
            }
            BodyState::UntilClose => {
                on_data(0..input.len());
                Ok(input.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_stops_at_the_end() {
        let mut s = BodyState::new(BodyKind::Length(5));
        assert_eq!(s.advance(b"abc", |_| {}).unwrap(), 3);
        assert_eq!(s.advance(b"deGET /", |r| assert_eq!(r, 0..2)).unwrap(), 2);
        assert!(s.is_done());
        assert_eq!(s.advance(b"more", |_| panic!()).unwrap(), 0);
    }

    #[test]
    fn chunked_payload_ranges() {
        let mut s = BodyState::new(BodyKind::Chunked);
        let input = b"3\r\nabc\r\n0\r\n\r\nNEXT";
        let mut data = Vec::new();
        let n = s
            .advance(input, |r| data.extend_from_slice(&input[r]))
            .unwrap();
        assert_eq!(n, input.len() - 4);
        assert_eq!(data, b"abc");
        assert!(s.is_done());
    }

    #[test]
    fn empty_kinds_are_done() {
        assert!(BodyState::new(BodyKind::Empty).is_done());
        assert!(BodyState::new(BodyKind::Length(0)).is_done());
        assert!(!BodyState::new(BodyKind::UntilClose).is_done());
    }
}
