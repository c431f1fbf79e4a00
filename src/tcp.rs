//! What the server keeps of each accepted TCP connection: the websocket slot
//! it holds, and a way to reset it when a client stops reading.
//!
//! A websocket's slot (`limits.max_connections`) is given back when the
//! connection's socket is really closed, not when its session ends: a client
//! that never reads keeps the socket's buffers full, and its close frame
//! never gets out. After `limits.close_timeout` the session resets such a
//! socket, which drops it and frees the slot.
//!
//! Everything here lives on the actix worker thread that owns the connection
//! (its sessions run as local tasks there), which is what makes using the raw
//! descriptor sound: see [`SocketHandle::reset`].

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::dev::Extensions;
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// One of the server's `max_connections` places, given back when dropped.
pub struct ConnectionSlot {
    count: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl ConnectionSlot {
    /// Takes a place, unless all `max` are taken.
    pub fn acquire(
        count: &Arc<AtomicUsize>,
        max: usize,
        metrics: &Arc<Metrics>,
    ) -> Option<ConnectionSlot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        metrics.connections_open.inc();
        Some(ConnectionSlot {
            count: Arc::clone(count),
            metrics: Arc::clone(metrics),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connections_open.dec();
    }
}

/// Shared between a connection's guard and its websocket session.
pub struct SocketHandle {
    /// The socket's descriptor while the connection exists.
    fd: Cell<Option<RawFd>>,
    gone: Notify,
}

impl SocketHandle {
    /// True once the server has dropped the connection.
    pub fn is_gone(&self) -> bool {
        self.fd.get().is_none()
    }

    /// Waits until the server has dropped the connection.
    pub async fn closed(&self) {
        while !self.is_gone() {
            self.gone.notified().await;
        }
    }

    /// Resets the connection: unsent data is discarded and the peer gets an
    /// RST, so the server drops the connection at once however full its
    /// buffers are.
    pub fn reset(&self) {
        let Some(fd) = self.fd.get() else {
            return;
        };
        // SAFETY: `fd` is set only while the connection's guard exists, and
        // the guard is dropped together with the connection's socket on this
        // same thread; no other code runs in between, so `fd` still names
        // this connection's socket.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let _ = socket.set_linger(Some(std::time::Duration::ZERO));
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Kept in the connection's data (`HttpRequest::conn_data`) for as long as
/// actix holds the connection.
pub struct ConnectionGuard {
    socket: Rc<SocketHandle>,
    slot: RefCell<Option<ConnectionSlot>>,
}

impl ConnectionGuard {
    /// Attaches a guard to a newly accepted connection (`HttpServer::on_connect`).
    pub fn attach(connection: &dyn std::any::Any, data: &mut Extensions) {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            // Small messages (REQUEST_COMPLETED, PONG) right after a large batch
            // must not wait for the client's delayed ACK (Nagle's algorithm).
            let _ = tcp.set_nodelay(true);
            data.insert(ConnectionGuard {
                socket: Rc::new(SocketHandle {
                    fd: Cell::new(Some(tcp.as_raw_fd())),
                    gone: Notify::new(),
                }),
                slot: RefCell::new(None),
            });
        }
    }

    /// Makes the connection hold `slot` until it is dropped; returns the
    /// handle its session uses to wait for that or to force it.
    pub fn hold(&self, slot: ConnectionSlot) -> Rc<SocketHandle> {
        *self.slot.borrow_mut() = Some(slot);
        Rc::clone(&self.socket)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.socket.fd.set(None);
        self.socket.gone.notify_waiters();
        self.slot.borrow_mut().take();
    }
}
