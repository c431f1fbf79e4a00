//! For the unit tests of the orchestration modules (session, dialects,
//! hub, services): an [`App`] built from settings as the server builds it,
//! a small datasource of its own, and a reader of what a connection's
//! outbox would write to the socket — no HTTP, no socket.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::config::Settings;
use crate::datasources::{
    Datasource, DatasourceError, DatasourceSettings, Field, FieldList, Item, Registry,
    RequestContext, ResultSink, SearchQuery, SetupError,
};
use crate::dialect::Framing;
use crate::outbox::{Outbox, OutboxBody};
use crate::session::Session;

/// Words that hold the query (`*`: all of them), one record each:
/// `{"word": …}`; the word `fail` makes every search fail.
pub struct Words(pub Vec<&'static str>);

#[async_trait]
impl Datasource for Words {
    async fn fields(&self, _: &RequestContext) -> Result<FieldList, DatasourceError> {
        Ok(FieldList {
            index: "words".into(),
            fields: vec![Field::new("word", "keyword")],
        })
    }

    async fn search(
        &self,
        _: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        if self.0.contains(&"fail") {
            return Err(DatasourceError::unavailable("the words are gone"));
        }
        let matching: Vec<&str> = self
            .0
            .iter()
            .copied()
            .filter(|w| query.query == "*" || w.contains(query.query.as_str()))
            .collect();
        results.set_total(matching.len() as u64);
        let page = matching
            .iter()
            .skip(query.from as usize)
            .take(query.size as usize)
            .map(|word| {
                let mut fields = Map::new();
                fields.insert("word".into(), json!(word));
                Item::from_fields(*word, &fields)
            })
            .collect();
        results.push(page).await?;
        Ok(())
    }
}

fn words(settings: &DatasourceSettings) -> Result<Arc<dyn Datasource>, SetupError> {
    let listed: Vec<&'static str> = match settings.id.as_str() {
        "broken" => vec!["fail"],
        _ => vec!["apple", "banana", "pineapple"],
    };
    Ok(Arc::new(Words(listed)))
}

/// Settings with the datasources `fruit` (three words) and `broken`
/// (failing every search), both of type `words`.
pub fn settings() -> Settings {
    let mut settings = Settings {
        datasources: Vec::new(),
        ..Settings::default()
    };
    for id in ["fruit", "broken"] {
        settings.datasources.push(DatasourceSettings {
            id: id.into(),
            name: id.to_uppercase(),
            kind: "words".into(),
            timeout: None,
            options: Map::new(),
            data_dir: None,
        });
    }
    settings
}

/// The server's [`App`] for `settings`, with the `words` type registered.
/// (Its shutdown sender is dropped: these tests drive shutdown themselves.)
pub fn app(settings: &Settings) -> Arc<App> {
    let mut registry = Registry::with_builtin();
    registry.register("words", words);
    let addr = "127.0.0.1:0".parse().expect("an address");
    let (app, _shutdown) = App::build(settings, &registry, addr).expect("the app builds");
    Arc::new(app)
}

/// What a connection's outbox writes, read back as messages.
pub struct Written {
    body: OutboxBody,
    buffer: BytesMut,
}

/// One frame as the client would read it.
#[derive(Debug)]
pub enum Frame {
    Text(Value),
    Close(u16, String),
    /// A ping, pong or other control frame.
    Other,
}

impl Written {
    pub fn new(body: OutboxBody) -> Written {
        Written {
            body,
            buffer: BytesMut::new(),
        }
    }

    /// The next frame written (within 5 s).
    pub async fn frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.parse() {
                return frame;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.body.next())
                .await
                .expect("a frame within 5 s")
                .expect("the outbox is open")
                .expect("infallible");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next text frame's JSON (skipping pings).
    pub async fn json(&mut self) -> Value {
        loop {
            match self.frame().await {
                Frame::Text(value) => return value,
                Frame::Close(code, reason) => panic!("closed: {code} {reason}"),
                Frame::Other => continue,
            }
        }
    }

    /// Frames written so far and not read, without waiting.
    pub async fn nothing_more(&mut self) -> bool {
        tokio::time::timeout(Duration::from_millis(100), self.frame())
            .await
            .is_err()
    }

    fn parse(&mut self) -> Option<Frame> {
        let header = self.buffer.get(..2)?;
        let opcode = header[0] & 0x0f;
        let (length, start) = match header[1] & 0x7f {
            126 => (
                u16::from_be_bytes(self.buffer.get(2..4)?.try_into().ok()?) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(self.buffer.get(2..10)?.try_into().ok()?) as usize,
                10,
            ),
            short => (short as usize, 2),
        };
        let payload = self.buffer.get(start..start + length)?.to_vec();
        self.buffer.advance(start + length);
        Some(match opcode {
            0x1 => Frame::Text(serde_json::from_slice(&payload).expect("JSON text")),
            0x8 => Frame::Close(
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..]).into_owned(),
            ),
            _ => Frame::Other,
        })
    }
}

/// A session speaking `framing` over an outbox read back by [`Written`].
pub fn session(app: &Arc<App>, framing: Framing) -> (Session, Written) {
    let (outbox, body) = outbox(app);
    let session = Session::new(7, framing, Arc::clone(app), Default::default(), outbox);
    (session, Written::new(body))
}

/// A connection's outbox, as the server sizes it.
pub fn outbox(app: &App) -> (Outbox, OutboxBody) {
    Outbox::new(app.limits.outbound_buffer_bytes, Arc::clone(&app.metrics))
}
