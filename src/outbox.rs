//! Each connection's outbox: what waits to be written to the client, bounded
//! in bytes, and the response body that writes it.
//!
//! Two queues feed the socket. The control queue (websocket pings, pongs and
//! the close frame, `PONG`, `SHUTDOWN_NOTICE`, errors about the connection,
//! `REQUEST_CANCELED`) is always written first. The data queue holds the
//! results of running requests; it is bounded by `limits.outbound_buffer_bytes`,
//! so a client that stops reading makes its requests wait instead of growing
//! memory, and the connection closes it after `limits.slow_client_timeout`.
//!
//! The body is polled by the HTTP server only when the socket can take more,
//! so no other queue sits between the outbox and the socket: what a client
//! does not read stays within its budget, and a close discards it at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::protocol::Frame;

/// Which request a queued frame belongs to, so a canceled request's frames can be dropped.
pub type RequestKey = u64;

/// The key of live frames (channel data): no request's, never discarded by a cancel.
pub const LIVE_KEY: RequestKey = 0;

/// Why a live frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveRefused {
    /// The connection is closing.
    Closed,
    /// The outbox is full: the client does not keep up.
    Full,
}

/// A frame of the control queue.
#[derive(Debug, Clone)]
pub enum Control {
    /// A JSON message that must not wait behind results.
    Text(Frame),
    Ping(Bytes),
    Pong(Bytes),
    Close {
        code: u16,
        reason: String,
    },
}

/// The outbox is closed: the connection is closing or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[derive(Default)]
struct Queues {
    control: VecDeque<Control>,
    data: VecDeque<(RequestKey, Frame)>,
    data_bytes: usize,
    /// A close to send once the data queue is empty (a graceful end).
    close_after_data: Option<Control>,
    /// No more frames are accepted.
    closed: bool,
    /// The close frame has been written, or the connection is gone: the body ends.
    ended: bool,
    writer: Option<Waker>,
    /// When the writer last took a frame, or frames began to wait in empty queues.
    last_progress: Option<Instant>,
}

impl Queues {
    /// Starts the stall clock when a frame is queued behind nothing.
    fn note_waiting(&mut self) {
        if self.data.is_empty() && self.control.is_empty() {
            self.last_progress = Some(Instant::now());
        }
    }
}

struct Shared {
    queues: Mutex<Queues>,
    space: Notify,
    budget: usize,
    metrics: Arc<Metrics>,
    /// Taken by a producer of results from encoding its frame until the
    /// frame is queued: however many requests a connection runs, one
    /// encoded frame at most waits for room besides the queue.
    turn: tokio::sync::Mutex<()>,
}

/// The producer side, cheap to clone: requests push results, the connection
/// pushes control frames.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

impl Outbox {
    /// A new outbox holding at most `budget` bytes of results, and the body that drains it.
    pub fn new(budget: usize, metrics: Arc<Metrics>) -> (Outbox, OutboxBody) {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            space: Notify::new(),
            budget: budget.max(1),
            metrics,
            turn: tokio::sync::Mutex::new(()),
        });
        (
            Outbox {
                shared: Arc::clone(&shared),
            },
            OutboxBody {
                shared,
                pending: None,
            },
        )
    }

    fn queues(&self) -> MutexGuard<'_, Queues> {
        lock(&self.shared)
    }

    /// Queues a result frame of `request`, waiting while the outbox is full.
    /// Returns how long it waited. A frame larger than the whole budget is
    /// accepted once the outbox is empty.
    pub async fn send(&self, request: RequestKey, frame: Frame) -> Result<Duration, Closed> {
        let started = Instant::now();
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut queues = self.queues();
                if queues.closed {
                    return Err(Closed);
                }
                if queues.data_bytes == 0 || queues.data_bytes + frame.len() <= self.shared.budget {
                    queues.note_waiting();
                    queues.data_bytes += frame.len();
                    self.shared.metrics.outbox_bytes.add(frame.len() as i64);
                    queues.data.push_back((request, frame));
                    wake(&mut queues);
                    return Ok(started.elapsed());
                }
            }
            space.await;
        }
    }

    /// Queues the frame `encode` makes, encoded only once it is this
    /// producer's turn (they come in order): the other requests of a client
    /// that does not read wait with their results unencoded, so what is
    /// held for it is its budget and one frame. Returns how long it waited.
    pub async fn send_encoded(
        &self,
        request: RequestKey,
        encode: impl FnOnce() -> Frame,
    ) -> Result<Duration, Closed> {
        let started = Instant::now();
        let _turn = self.shared.turn.lock().await;
        if self.is_closed() {
            return Err(Closed);
        }
        let frame = encode();
        self.send(request, frame).await?;
        Ok(started.elapsed())
    }

    /// Queues a live frame (channel data with [`LIVE_KEY`], or a live
    /// request's appends with its key) without waiting. Refused when the
    /// outbox already holds its whole budget: the client reads too slowly
    /// to follow a live stream, and the caller drops it (4420).
    pub fn try_send_live(&self, key: RequestKey, frame: Frame) -> Result<(), LiveRefused> {
        let budget = self.shared.budget;
        self.try_push(key, frame, |queued, len| {
            queued == 0 || queued + len <= budget
        })
    }

    /// Queues `frame` now if `fits(queued bytes, its length)`.
    fn try_push(
        &self,
        key: RequestKey,
        frame: Frame,
        fits: impl FnOnce(usize, usize) -> bool,
    ) -> Result<(), LiveRefused> {
        let mut queues = self.queues();
        if queues.closed {
            return Err(LiveRefused::Closed);
        }
        if !fits(queues.data_bytes, frame.len()) {
            return Err(LiveRefused::Full);
        }
        queues.note_waiting();
        queues.data_bytes += frame.len();
        self.shared.metrics.outbox_bytes.add(frame.len() as i64);
        queues.data.push_back((key, frame));
        wake(&mut queues);
        Ok(())
    }

    /// Queues a frame without waiting, only while the outbox holds at most
    /// `share` bytes with it; refused (`Full`) otherwise, and the outbox
    /// stays open: for frames another client sends this one (events
    /// between services), so a flood fills the sender's share, never the
    /// receiver's whole budget.
    pub fn try_send_within(
        &self,
        key: RequestKey,
        frame: Frame,
        share: usize,
    ) -> Result<(), LiveRefused> {
        let limit = share.min(self.shared.budget);
        self.try_push(key, frame, |queued, len| queued + len <= limit)
    }

    /// The most bytes of results this outbox holds.
    pub fn budget(&self) -> usize {
        self.shared.budget
    }

    /// Queues a control frame, ahead of every result.
    pub fn send_control(&self, control: Control) -> Result<(), Closed> {
        let mut queues = self.queues();
        if queues.closed {
            return Err(Closed);
        }
        queues.note_waiting();
        queues.control.push_back(control);
        wake(&mut queues);
        Ok(())
    }

    /// Drops the queued results of `request` (it was canceled).
    pub fn discard(&self, request: RequestKey) {
        let mut queues = self.queues();
        let before = queues.data_bytes;
        queues.data.retain(|(key, _)| *key != request);
        queues.data_bytes = queues.data.iter().map(|(_, f)| f.len()).sum();
        self.shared
            .metrics
            .outbox_bytes
            .sub((before - queues.data_bytes) as i64);
        drop(queues);
        self.shared.space.notify_waiters();
    }

    /// Closes now: the close frame goes out next, queued results are dropped.
    pub fn close_now(&self, code: u16, reason: &str) {
        self.close(code, reason, false);
    }

    /// Closes once the queued results are written (a graceful end).
    pub fn close_after_data(&self, code: u16, reason: &str) {
        self.close(code, reason, true);
    }

    fn close(&self, code: u16, reason: &str, after_data: bool) {
        let mut queues = self.queues();
        if queues.closed {
            return;
        }
        let close = Control::Close {
            code,
            reason: reason.to_owned(),
        };
        if after_data {
            queues.close_after_data = Some(close);
        } else {
            self.drop_data(&mut queues);
            queues.control.push_back(close);
        }
        queues.closed = true;
        wake(&mut queues);
        drop(queues);
        self.shared.space.notify_waiters();
    }

    /// Ends without a close frame (the client is gone): everything queued is dropped.
    pub fn abandon(&self) {
        let mut queues = self.queues();
        self.drop_data(&mut queues);
        queues.control.clear();
        queues.close_after_data = None;
        queues.closed = true;
        queues.ended = true;
        wake(&mut queues);
        drop(queues);
        self.shared.space.notify_waiters();
    }

    /// True once no more frames are accepted.
    pub fn is_closed(&self) -> bool {
        self.queues().closed
    }

    /// How long results have waited without the client taking any; `None`
    /// when nothing waits.
    pub fn stalled_for(&self) -> Option<Duration> {
        let queues = self.queues();
        if queues.data.is_empty() && queues.control.is_empty() {
            return None;
        }
        queues.last_progress.map(|at| at.elapsed())
    }

    /// Bytes of results queued now.
    pub fn queued_bytes(&self) -> usize {
        self.queues().data_bytes
    }

    fn drop_data(&self, queues: &mut Queues) {
        self.shared
            .metrics
            .outbox_bytes
            .sub(queues.data_bytes as i64);
        queues.data.clear();
        queues.data_bytes = 0;
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Queues> {
    // Nothing panics while holding the lock; should it ever, the queues are still consistent.
    shared
        .queues
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wake(queues: &mut Queues) {
    if let Some(waker) = queues.writer.take() {
        waker.wake();
    }
}

/// The websocket response body: frames taken from the outbox, control first.
pub struct OutboxBody {
    shared: Arc<Shared>,
    /// The payload of a large frame whose header was just yielded.
    pending: Option<Bytes>,
}

/// Frames up to this size are copied behind their header into one chunk;
/// larger ones go out as header and shared payload.
const COPY_BELOW: usize = 4096;

impl Stream for OutboxBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(payload) = this.pending.take() {
            return Poll::Ready(Some(Ok(payload)));
        }
        let mut queues = lock(&this.shared);
        let next = if let Some(control) = queues.control.pop_front() {
            queues.last_progress = Some(Instant::now());
            Some(control)
        } else if let Some((_, frame)) = queues.data.pop_front() {
            queues.data_bytes -= frame.len();
            queues.last_progress = Some(Instant::now());
            this.shared.metrics.outbox_bytes.sub(frame.len() as i64);
            drop(queues);
            this.shared.space.notify_waiters();
            queues = lock(&this.shared);
            Some(Control::Text(frame))
        } else {
            queues.close_after_data.take()
        };
        let Some(next) = next else {
            if queues.ended {
                return Poll::Ready(None);
            }
            queues.writer = Some(cx.waker().clone());
            return Poll::Pending;
        };
        if matches!(next, Control::Close { .. }) {
            queues.ended = true;
            queues.closed = true;
        }
        drop(queues);
        let (opcode, payload) = match next {
            Control::Text(frame) => {
                this.shared.metrics.messages_out.inc();
                this.shared.metrics.bytes_out.inc_by(frame.len() as u64);
                (OPCODE_TEXT, frame.bytes().clone())
            }
            Control::Ping(bytes) => (OPCODE_PING, truncate_control(bytes)),
            Control::Pong(bytes) => (OPCODE_PONG, truncate_control(bytes)),
            Control::Close { code, reason } => (OPCODE_CLOSE, close_payload(code, &reason)),
        };
        let mut chunk = BytesMut::with_capacity(10 + payload.len().min(COPY_BELOW));
        put_header(&mut chunk, opcode, payload.len());
        if payload.len() < COPY_BELOW {
            chunk.put_slice(&payload);
        } else {
            this.pending = Some(payload);
        }
        Poll::Ready(Some(Ok(chunk.freeze())))
    }
}

impl Drop for OutboxBody {
    fn drop(&mut self) {
        // The connection is gone: nothing more can be written.
        Outbox {
            shared: Arc::clone(&self.shared),
        }
        .abandon();
    }
}

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;
/// RFC 6455 §5.5: control frames carry at most 125 bytes.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A final, unmasked frame header (RFC 6455 §5.2): servers never mask.
fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

fn truncate_control(bytes: Bytes) -> Bytes {
    if bytes.len() > MAX_CONTROL_PAYLOAD {
        bytes.slice(..MAX_CONTROL_PAYLOAD)
    } else {
        bytes
    }
}

/// The close code and as much of the reason as fits, cut at a character boundary.
fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = BytesMut::with_capacity(2 + end);
    payload.put_u16(code);
    payload.put_slice(&reason.as_bytes()[..end]);
    payload.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{DatasourceInfo, ServerMessage};
    use futures_util::StreamExt;

    fn frame(n: usize) -> Frame {
        let infos: Vec<DatasourceInfo> = (0..n)
            .map(|i| DatasourceInfo {
                id: format!("{i:04}"),
                name: String::new(),
                kind: String::new(),
            })
            .collect();
        ServerMessage::InitialState {
            datasources: &infos,
            links: &[],
        }
        .encode()
    }

    #[tokio::test]
    async fn control_frames_jump_the_data_queue_and_the_budget_holds() {
        let metrics = Arc::new(Metrics::new());
        let one = frame(10);
        let (outbox, mut body) = Outbox::new(one.len() * 2, metrics);
        outbox.send(1, one.clone()).await.unwrap();
        outbox.send(1, one.clone()).await.unwrap();
        // A third frame does not fit: it waits.
        let third = tokio::time::timeout(Duration::from_millis(50), outbox.send(2, one.clone()));
        assert!(third.await.is_err());
        outbox
            .send_control(Control::Pong(Bytes::from_static(b"p")))
            .unwrap();
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(first[0], 0x80 | OPCODE_PONG);
        let second = body.next().await.unwrap().unwrap();
        assert_eq!(second[0], 0x80 | OPCODE_TEXT);
        // Room for one more now.
        outbox.send(2, one.clone()).await.unwrap();
        assert_eq!(outbox.queued_bytes(), one.len() * 2);
        outbox.discard(2);
        assert_eq!(outbox.queued_bytes(), one.len());
        outbox.close_now(4420, "too slow");
        assert_eq!(outbox.queued_bytes(), 0);
        let close = body.next().await.unwrap().unwrap();
        assert_eq!(close[0], 0x80 | OPCODE_CLOSE);
        assert_eq!(&close[2..4], &4420u16.to_be_bytes());
        assert!(body.next().await.is_none());
        assert_eq!(outbox.send(3, one).await, Err(Closed));
    }

    #[tokio::test]
    async fn producers_waiting_for_room_hold_one_encoded_frame_at_most() {
        let one = frame(10);
        let (outbox, mut body) = Outbox::new(one.len(), Arc::new(Metrics::new()));
        outbox.send(1, one.clone()).await.unwrap();
        let encoded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut waiting = Vec::new();
        for key in 2..6 {
            let (outbox, one, encoded) = (outbox.clone(), one.clone(), Arc::clone(&encoded));
            waiting.push(tokio::spawn(async move {
                outbox
                    .send_encoded(key, || {
                        encoded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        one
                    })
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Four producers wait; only the one whose turn it is has encoded.
        assert_eq!(encoded.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Each frame written lets the next producer encode, one at a time.
        for n in 2..=4 {
            body.next().await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(encoded.load(std::sync::atomic::Ordering::SeqCst), n);
        }
        for _ in 0..2 {
            body.next().await.unwrap().unwrap();
        }
        for producer in waiting {
            assert!(producer.await.unwrap().is_ok());
        }
    }

    #[tokio::test]
    async fn a_graceful_close_follows_the_data() {
        let (outbox, mut body) = Outbox::new(1 << 20, Arc::new(Metrics::new()));
        outbox.send(1, frame(1)).await.unwrap();
        outbox.close_after_data(1001, "bye");
        assert_eq!(body.next().await.unwrap().unwrap()[0], 0x80 | OPCODE_TEXT);
        assert_eq!(body.next().await.unwrap().unwrap()[0], 0x80 | OPCODE_CLOSE);
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn a_long_idle_connection_is_not_a_stalled_one() {
        let (outbox, mut body) = Outbox::new(1 << 20, Arc::new(Metrics::new()));
        outbox.send(1, frame(1)).await.unwrap();
        body.next().await.unwrap().unwrap();
        assert_eq!(outbox.stalled_for(), None);
        // Idle for a while, then a ping is queued: the stall clock starts now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        outbox
            .send_control(Control::Ping(Bytes::from_static(b"p")))
            .unwrap();
        let stalled = outbox.stalled_for().expect("something waits");
        assert!(stalled < Duration::from_millis(50), "{stalled:?}");
        body.next().await.unwrap().unwrap();
        assert_eq!(outbox.stalled_for(), None);
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        let mut out = BytesMut::new();
        put_header(&mut out, OPCODE_TEXT, 125);
        assert_eq!(&out[..], &[0x81, 125]);
        out.clear();
        put_header(&mut out, OPCODE_TEXT, 126);
        assert_eq!(&out[..], &[0x81, 126, 0, 126]);
        out.clear();
        put_header(&mut out, OPCODE_TEXT, 70_000);
        assert_eq!(out[1], 127);
        assert_eq!(&out[2..], &70_000u64.to_be_bytes());
        assert_eq!(close_payload(1000, &"é".repeat(100)).len(), 2 + 122);
    }
}
