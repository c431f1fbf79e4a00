//! A websocket client written by hand, byte by byte, for what a well-behaved
//! client library refuses to send: duplicate or non-ASCII headers, frames
//! that announce absurd lengths, and clients that never read.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PATIENCE;

/// Sends a websocket upgrade with exactly these extra header lines (raw
/// bytes, repeated names allowed) and returns the response status and the
/// stream, positioned after the response head.
pub async fn upgrade(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &[u8])],
) -> (u16, TcpStream) {
    let stream = TcpStream::connect(addr).await.expect("connects");
    upgrade_on(stream, addr, target, headers).await
}

pub async fn upgrade_on(
    mut stream: TcpStream,
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &[u8])],
) -> (u16, TcpStream) {
    stream
        .write_all(&upgrade_request(addr, target, headers))
        .await
        .expect("writes");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("reads");
        assert_eq!(n, 1, "connection closed before the response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, stream)
}

/// The bytes of an upgrade request; `Host` is the server's address unless a header sets it.
pub fn upgrade_request(addr: SocketAddr, target: &str, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut request = format!("GET {target} HTTP/1.1\r\n").into_bytes();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.extend(format!("Host: {addr}\r\n").as_bytes());
    }
    request.extend(
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    for (name, value) in headers {
        request.extend(name.as_bytes());
        request.extend(b": ");
        request.extend(*value);
        request.extend(b"\r\n");
    }
    request.extend(b"\r\n");
    request
}

/// A client frame's header: FIN, opcode, masked with a zero key (so the
/// payload goes as is), and the declared payload length.
pub fn frame_header(fin: bool, opcode: u8, length: u64) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    match length {
        0..=125 => header.push(0x80 | length as u8),
        126..=65535 => {
            header.push(0x80 | 126);
            header.extend((length as u16).to_be_bytes());
        }
        _ => {
            header.push(0x80 | 127);
            header.extend(length.to_be_bytes());
        }
    }
    header.extend([0, 0, 0, 0]);
    header
}

/// A whole client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = frame_header(fin, opcode, payload.len() as u64);
    bytes.extend(payload);
    bytes
}

/// A text frame with a JSON message.
pub fn text(message: &serde_json::Value) -> Vec<u8> {
    frame(true, 1, message.to_string().as_bytes())
}

/// The next frame from the server: its opcode and payload (`None` at the end of the stream).
pub async fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.ok()?;
    let length = match head[1] & 0x7F {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).await.ok()?;
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).await.ok()?;
            u64::from_be_bytes(ext)
        }
        short => u64::from(short),
    };
    let mut payload = vec![0u8; usize::try_from(length).ok()?];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0F, payload))
}

/// The next text frame's JSON, skipping control frames.
pub async fn next_json(stream: &mut TcpStream) -> serde_json::Value {
    loop {
        let (opcode, payload) = tokio::time::timeout(PATIENCE, read_frame(stream))
            .await
            .expect("a frame in time")
            .expect("the connection stays open");
        if opcode == 1 {
            return serde_json::from_slice(&payload).expect("JSON");
        }
    }
}

/// Reads server frames until a close frame (its code) or the end of the stream (`None`).
pub async fn close_code(stream: &mut TcpStream, patience: Duration) -> Option<u16> {
    let read = async {
        loop {
            let (opcode, payload) = read_frame(stream).await?;
            if opcode == 8 {
                return payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]]));
            }
        }
    };
    tokio::time::timeout(patience, read)
        .await
        .expect("the server closes in time")
}

/// A client that opens a websocket with a 4 KiB receive buffer, sends
/// `request` and never reads a byte: its socket fills at once.
pub async fn never_reading(addr: SocketAddr, request: &serde_json::Value) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let mut stream = socket.connect(addr).await.expect("connects");
    let mut bytes = upgrade_request(addr, "/ws", &[]);
    bytes.extend(text(request));
    stream.write_all(&bytes).await.expect("writes");
    stream
}
