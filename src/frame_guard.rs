//! Reads the websocket frame headers of a connection's inbound bytes before
//! the websocket decoder does, and stops the connection at the header of a
//! frame (or fragmented message) over the size limit.
//!
//! The decoder itself only checks a frame's size once the whole frame has
//! arrived, and buffers it meanwhile: a header announcing 2^63 bytes would
//! let one client fill the server's memory. Here the declared length is
//! checked as soon as the header is in, and nothing more is read.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest};
use futures_util::Stream;

/// Wraps a websocket request's body so frames over `max_message_bytes` end it
/// with [`PayloadError::Overflow`] (see [`is_overflow`]).
pub async fn guard_payload(
    req: &HttpRequest,
    body: web::Payload,
    max_message_bytes: usize,
) -> actix_web::Result<web::Payload> {
    let guarded = FrameGuard {
        inner: body.into_inner(),
        scanner: FrameScanner::new(max_message_bytes as u64),
        failed: false,
    };
    let mut payload = Payload::from(Box::pin(guarded) as Pin<Box<dyn Stream<Item = _>>>);
    web::Payload::from_request(req, &mut payload).await
}

/// True when a websocket stream error is the guard's "message too large".
pub fn is_overflow(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<PayloadError>())
        .is_some_and(|e| matches!(e, PayloadError::Overflow))
}

struct FrameGuard {
    inner: Payload,
    scanner: FrameScanner,
    failed: bool,
}

impl Stream for FrameGuard {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if this.scanner.feed(&bytes).is_err() {
                    this.failed = true;
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            other => other,
        }
    }
}

/// Follows frame boundaries through a byte stream (RFC 6455 §5.2).
#[derive(Debug)]
pub struct FrameScanner {
    max: u64,
    /// Bytes of the current frame's header seen so far.
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    remaining: u64,
    /// Bytes of the current (possibly fragmented) data message so far.
    message: u64,
}

/// A frame or message over the limit.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

impl FrameScanner {
    pub fn new(max: u64) -> Self {
        FrameScanner {
            max,
            header: [0; 14],
            header_len: 0,
            remaining: 0,
            message: 0,
        }
    }

    /// Takes the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), TooLarge> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(bytes.len() as u64);
                self.remaining -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if let Some(length) = self.header_complete() {
                self.header_len = 0;
                self.on_frame(self.header[0] & 0x0F, length)?;
                self.remaining = length;
            }
        }
        Ok(())
    }

    /// The payload length once the header (with its mask) is complete.
    fn header_complete(&self) -> Option<u64> {
        let h = &self.header[..self.header_len];
        if h.len() < 2 {
            return None;
        }
        let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
        let (length, extended) = match h[1] & 0x7F {
            126 if h.len() >= 4 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 2),
            127 if h.len() >= 10 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(be), 8)
            }
            126 | 127 => return None,
            short => (u64::from(short), 0),
        };
        (h.len() == 2 + extended + mask).then_some(length)
    }

    fn on_frame(&mut self, opcode: u8, length: u64) -> Result<(), TooLarge> {
        match opcode {
            // Text or binary starts a message; a continuation adds to it.
            1 | 2 => self.message = length,
            0 => self.message = self.message.saturating_add(length),
            // Control frames are at most 125 bytes; the decoder enforces that.
            _ => return Ok(()),
        }
        if length > self.max || self.message > self.max {
            Err(TooLarge)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: u8, length: u64) -> Vec<u8> {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        match length {
            0..=125 => h.push(0x80 | length as u8),
            126..=65535 => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(length as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&length.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn a_huge_declared_length_is_refused_at_the_header() {
        for length in [u64::MAX >> 1, 1 << 40, 65_537] {
            let mut scanner = FrameScanner::new(65_536);
            assert_eq!(
                scanner.feed(&header(true, 1, length)),
                Err(TooLarge),
                "{length}"
            );
        }
    }

    #[test]
    fn frames_within_the_limit_pass_byte_by_byte() {
        let mut scanner = FrameScanner::new(1000);
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend(header(true, 1, 300));
            stream.extend(vec![b'x'; 300]);
            stream.extend(header(true, 9, 4));
            stream.extend(b"ping");
        }
        for byte in stream {
            assert_eq!(scanner.feed(&[byte]), Ok(()));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 512, failure_persistence: None, ..Default::default() })]
        /// Any bytes, cut anywhere: no panic, and the verdict does not depend on the cuts.
        #[test]
        fn any_bytes_in_any_chunks(
            frames in proptest::collection::vec((proptest::bool::ANY, 0u8..16, 0u64..3000), 0..8),
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            cuts in proptest::collection::vec(1usize..50, 0..20),
        ) {
            let mut stream = Vec::new();
            for (fin, opcode, length) in frames {
                stream.extend(header(fin, opcode, length));
                stream.extend(std::iter::repeat_n(b'x', length as usize));
            }
            stream.extend(noise);
            let whole = FrameScanner::new(2000).feed(&stream).is_ok();
            let mut scanner = FrameScanner::new(2000);
            let mut rest = &stream[..];
            let mut chunked = true;
            for cut in cuts.into_iter().chain(std::iter::once(usize::MAX)) {
                let (chunk, tail) = rest.split_at(cut.min(rest.len()));
                rest = tail;
                if scanner.feed(chunk).is_err() {
                    chunked = false;
                    break;
                }
            }
            proptest::prop_assert_eq!(whole, chunked);
        }
    }

    #[test]
    fn a_fragmented_message_counts_as_a_whole() {
        let mut scanner = FrameScanner::new(1000);
        let mut stream = header(false, 1, 600);
        stream.extend(vec![b'x'; 600]);
        assert_eq!(scanner.feed(&stream), Ok(()));
        // A ping between fragments does not reset the count.
        let mut ping = header(true, 9, 1);
        ping.push(b'p');
        assert_eq!(scanner.feed(&ping), Ok(()));
        assert_eq!(scanner.feed(&header(true, 0, 600)), Err(TooLarge));
    }
}
