//! An async client for tributary's websocket protocol.
//!
//! ```no_run
//! # async fn example() -> Result<(), tributary_client::ClientError> {
//! use tributary_client::{Client, Search};
//!
//! let mut client = Client::connect("ws://127.0.0.1:8080/ws").await?;
//! println!("datasources: {:?}", client.datasources());
//! let reply = client
//!     .request(Search::new(["tweets", "emails"], "bitcoin").size(100).color("#de79f2"))
//!     .await?;
//! for batch in &reply.batches {
//!     println!("{}: {} of {}", batch.server, batch.results.len(), batch.total);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! - [`Client::request`] sends a request with a fresh `request-id` and
//!   collects its reply (batches, errors, completion); [`Client::start`] and
//!   [`Client::next_event`] stream it instead; [`Client::cancel`] stops it.
//! - [`Client::request_stats`] reads a reply without decoding the results
//!   (counts and timings only), for load generators.
//! - [`Client::send_text`] and [`Client::next_frame`] give raw access, for
//!   protocol tests.

mod scan;
mod stats;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use stats::{DatasourceTiming, RequestStats};
pub use tokio_tungstenite::tungstenite;
pub use tributary_protocol::events::{ErrorBody, FieldsBatch, ItemsBatch, ServerEvent};
pub use tributary_protocol::{
    CancelRequest, ClientMessage, DatasourceInfo, DatasourceOutcome, FieldsRequest, Item,
    ItemsRequest, LinkInfo, Ping, RequestId,
};

/// The websocket under a [`Client`].
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(tokio_tungstenite::tungstenite::Error),
    #[error("the websocket failed: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the server closed the connection ({0:?})")]
    Closed(Option<u16>),
    #[error("the server sent what this client cannot read: {0}")]
    Undecodable(String),
    #[error("the server did not greet with INITIAL_STATE_RECEIVE")]
    NoGreeting,
}

/// One frame from the server, undecoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The text as received (shared bytes, not copied; it derefs to `&str`).
    Text(tungstenite::Utf8Bytes),
    Binary(Vec<u8>),
    /// The server closed the connection, with its close code if it sent one.
    Closed(Option<u16>),
}

/// An `ITEMS_REQUEST` being built.
#[derive(Debug, Clone)]
pub struct Search(ItemsRequest);

impl Search {
    pub fn new<I, S>(datasources: I, query: impl Into<String>) -> Search
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Search(ItemsRequest {
            datasources: datasources.into_iter().map(Into::into).collect(),
            query: query.into(),
            from: 0,
            size: tributary_protocol::DEFAULT_SIZE,
            color: None,
            request_id: None,
            live: false,
            resume: None,
        })
    }
    /// Keeps following the query after its page (`"live": true`).
    pub fn live(mut self) -> Search {
        self.0.live = true;
        self
    }
    /// Takes a live request up again on `datasource` after `position` (the
    /// last `offset` and `epoch` received from it): what was missed is sent
    /// instead of a page, when the server can.
    pub fn resume(
        mut self,
        datasource: impl Into<String>,
        position: tributary_protocol::Position,
    ) -> Search {
        self.0.live = true;
        self.0
            .resume
            .get_or_insert_with(Default::default)
            .insert(datasource.into(), position);
        self
    }
    pub fn from(mut self, from: u64) -> Search {
        self.0.from = from;
        self
    }
    pub fn size(mut self, size: u64) -> Search {
        self.0.size = size;
        self
    }
    pub fn color(mut self, color: impl Into<String>) -> Search {
        self.0.color = Some(color.into());
        self
    }
}

/// A request the client can send and track.
pub trait Request {
    /// The message, with `request_id` set.
    fn into_message(self, request_id: RequestId) -> ClientMessage;
}

impl Request for Search {
    fn into_message(mut self, request_id: RequestId) -> ClientMessage {
        self.0.request_id = Some(request_id);
        ClientMessage::Items(self.0)
    }
}

/// A `FIELDS_REQUEST`.
#[derive(Debug, Clone)]
pub struct Fields(pub Vec<String>);

impl Request for Fields {
    fn into_message(self, request_id: RequestId) -> ClientMessage {
        ClientMessage::Fields(FieldsRequest {
            datasources: self.0,
            request_id: Some(request_id),
        })
    }
}

/// Everything the server answered to one request.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub fields: Vec<FieldsBatch>,
    pub batches: Vec<ItemsBatch>,
    pub errors: Vec<ErrorBody>,
    /// Per datasource, how its part ended (`REQUEST_COMPLETED`).
    pub outcomes: BTreeMap<String, DatasourceOutcome>,
    /// The request was canceled (`REQUEST_CANCELED`) before it completed.
    pub canceled: bool,
}

impl Reply {
    /// Every result, batch after batch.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.batches.iter().flat_map(|b| b.results.iter())
    }

    /// The total one datasource reported.
    pub fn total(&self, datasource: &str) -> Option<u64> {
        self.batches
            .iter()
            .find(|b| b.server == datasource)
            .map(|b| b.total)
    }
}

pub struct Client {
    socket: Socket,
    datasources: Vec<DatasourceInfo>,
    links: Vec<LinkInfo>,
    next_id: i64,
}

impl Client {
    /// Connects and reads the server's greeting (`INITIAL_STATE_RECEIVE`).
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Client::connect_with(url, None).await
    }

    /// Connects with an API token (sent as `Authorization: Bearer`).
    pub async fn connect_with(url: &str, token: Option<&str>) -> Result<Client, ClientError> {
        let mut request = url.into_client_request().map_err(ClientError::Connect)?;
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                ClientError::Connect(tokio_tungstenite::tungstenite::Error::Url(
                    tokio_tungstenite::tungstenite::error::UrlError::UnsupportedUrlScheme,
                ))
            })?;
            request.headers_mut().insert("Authorization", value);
        }
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(ClientError::Connect)?;
        Client::greeted(socket).await
    }

    /// Wraps a websocket already open (for custom handshakes) and reads the greeting.
    pub async fn greeted(socket: Socket) -> Result<Client, ClientError> {
        let mut client = Client::without_greeting(socket);
        match client.next_event().await? {
            ServerEvent::InitialState { datasources, links } => {
                client.datasources = datasources;
                client.links = links;
                Ok(client)
            }
            _ => Err(ClientError::NoGreeting),
        }
    }

    /// Wraps a websocket whose greeting is still unread.
    pub fn without_greeting(socket: Socket) -> Client {
        Client {
            socket,
            datasources: Vec::new(),
            links: Vec::new(),
            next_id: 1,
        }
    }

    /// The datasources the server offered this connection.
    pub fn datasources(&self) -> &[DatasourceInfo] {
        &self.datasources
    }

    /// The links between fields of different datasources the server follows
    /// when expanding (`EXPAND_REQUEST`).
    pub fn links(&self) -> &[LinkInfo] {
        &self.links
    }

    /// The websocket itself.
    pub fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    /// Sends a message as it is.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        self.send_text(&message.encode()).await
    }

    /// Sends any text frame (for protocol tests).
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.socket.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a websocket message of any kind (for protocol tests).
    pub async fn send_raw(&mut self, message: Message) -> Result<(), ClientError> {
        self.socket.send(message).await?;
        Ok(())
    }

    /// Sends `request` with a fresh request id and returns the id.
    pub async fn start(&mut self, request: impl Request) -> Result<RequestId, ClientError> {
        let id = RequestId::Number(self.next_id);
        self.next_id += 1;
        self.send(&request.into_message(id.clone())).await?;
        Ok(id)
    }

    /// Sends `request` and collects its whole reply. Messages about other
    /// requests are skipped.
    pub async fn request(&mut self, request: impl Request) -> Result<Reply, ClientError> {
        let id = self.start(request).await?;
        self.reply(&id).await
    }

    /// Collects the reply to the request `id` until it completes or is canceled.
    pub async fn reply(&mut self, id: &RequestId) -> Result<Reply, ClientError> {
        let mut reply = Reply::default();
        loop {
            let event = self.next_event().await?;
            if event.request_id() != Some(id) {
                continue;
            }
            match event {
                ServerEvent::Fields { fields, .. } => reply.fields.push(fields),
                ServerEvent::Items { items, .. } => reply.batches.push(items),
                ServerEvent::Error { error, .. } => reply.errors.push(error),
                ServerEvent::RequestCompleted { datasources, .. } => {
                    reply.outcomes = datasources;
                    return Ok(reply);
                }
                ServerEvent::RequestCanceled { .. } => {
                    reply.canceled = true;
                    return Ok(reply);
                }
                _ => {}
            }
        }
    }

    /// Asks the server to stop the request `id`.
    pub async fn cancel(&mut self, id: &RequestId) -> Result<(), ClientError> {
        self.send(&ClientMessage::Cancel(CancelRequest {
            request_id: id.clone(),
        }))
        .await
    }

    /// The next message from the server, decoded.
    pub async fn next_event(&mut self) -> Result<ServerEvent, ClientError> {
        match self.next_frame().await? {
            Frame::Text(text) => ServerEvent::decode(&text)
                .map_err(|e| ClientError::Undecodable(format!("{e}: {text:.200}"))),
            Frame::Binary(_) => Err(ClientError::Undecodable("a binary frame".into())),
            Frame::Closed(code) => Err(ClientError::Closed(code)),
        }
    }

    /// The next data frame from the server, undecoded; websocket pings are
    /// answered on the way.
    pub async fn next_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(Frame::Text(text)),
                Some(Ok(Message::Binary(bytes))) => return Ok(Frame::Binary(bytes.to_vec())),
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Frame::Closed(frame.map(|f| u16::from(f.code))))
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(ClientError::Socket(error)),
                None => return Ok(Frame::Closed(None)),
            }
        }
    }

    /// Like [`Client::next_frame`], giving up after `patience`.
    pub async fn next_frame_within(
        &mut self,
        patience: Duration,
    ) -> Option<Result<Frame, ClientError>> {
        tokio::time::timeout(patience, self.next_frame()).await.ok()
    }

    /// Closes the connection politely.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.socket
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await?;
        Ok(())
    }
}
