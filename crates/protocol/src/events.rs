//! The server's messages decoded again, as a client sees them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use tributary_datasource::{Field, Item};

use crate::inbound::RequestId;
use crate::outbound::{DatasourceInfo, DatasourceOutcome, LinkInfo};

/// One message from the server.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    InitialState {
        datasources: Vec<DatasourceInfo>,
        /// Links between fields of different datasources (none from a
        /// server without `[links.*]`).
        links: Vec<LinkInfo>,
    },
    /// The datasources changed (a remote datasource joined): the whole list.
    DatasourcesChanged {
        datasources: Vec<DatasourceInfo>,
    },
    Fields {
        request_id: Option<RequestId>,
        fields: FieldsBatch,
    },
    Items {
        request_id: Option<RequestId>,
        items: ItemsBatch,
    },
    Error {
        request_id: Option<RequestId>,
        error: ErrorBody,
    },
    RequestCompleted {
        request_id: RequestId,
        datasources: BTreeMap<String, DatasourceOutcome>,
    },
    RequestCanceled {
        request_id: RequestId,
    },
    Pong {
        t: Option<Value>,
        server_t: u64,
        /// The server's stats (`null` from servers that send none).
        stats: Value,
    },
    ShutdownNotice {
        drain_ms: u64,
    },
    /// A message type this client does not know (a newer server's).
    Other {
        kind: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldsBatch {
    pub server: String,
    pub index: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ItemsBatch {
    pub server: String,
    pub query: String,
    pub color: Option<String>,
    pub total: u64,
    #[serde(default)]
    pub from: u64,
    pub results: Vec<Item>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub query: Option<String>,
    pub color: Option<String>,
    pub message: String,
    pub code: String,
    #[serde(default)]
    pub datasource: Option<String>,
}

impl ServerEvent {
    /// The request this message answers, if it names one.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            ServerEvent::Fields { request_id, .. }
            | ServerEvent::Items { request_id, .. }
            | ServerEvent::Error { request_id, .. } => request_id.as_ref(),
            ServerEvent::RequestCompleted { request_id, .. }
            | ServerEvent::RequestCanceled { request_id } => Some(request_id),
            _ => None,
        }
    }

    /// Decodes one text frame from the server.
    pub fn decode(text: &str) -> Result<ServerEvent, serde_json::Error> {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        #[derive(Deserialize)]
        struct State {
            datasources: Vec<DatasourceInfo>,
            #[serde(default)]
            links: Vec<LinkInfo>,
        }
        #[derive(Deserialize)]
        struct Initial {
            state: State,
        }
        #[derive(Deserialize)]
        struct WithId<T> {
            #[serde(flatten)]
            body: T,
            #[serde(rename = "request-id", default)]
            request_id: Option<RequestId>,
        }
        #[derive(Deserialize)]
        struct FieldsBody {
            fields: FieldsBatch,
        }
        #[derive(Deserialize)]
        struct ErrorMessage {
            error: ErrorBody,
        }
        #[derive(Deserialize)]
        struct Completed {
            datasources: BTreeMap<String, DatasourceOutcome>,
            #[serde(rename = "request-id")]
            request_id: RequestId,
        }
        #[derive(Deserialize)]
        struct Canceled {
            #[serde(rename = "request-id")]
            request_id: RequestId,
        }
        #[derive(Deserialize)]
        struct Pong {
            #[serde(default)]
            t: Option<Value>,
            server_t: u64,
            #[serde(default)]
            stats: Value,
        }
        #[derive(Deserialize)]
        struct Notice {
            drain_ms: u64,
        }
        let envelope: Envelope = serde_json::from_str(text)?;
        // `Item` holds raw JSON, which `#[serde(flatten)]` cannot buffer:
        // items are read with a request id of their own, without flatten.
        #[derive(Deserialize)]
        struct ItemsMessage {
            items: ItemsBatch,
            #[serde(rename = "request-id", default)]
            request_id: Option<RequestId>,
        }
        Ok(match envelope.kind.as_ref() {
            "INITIAL_STATE_RECEIVE" => {
                let initial: Initial = serde_json::from_str(text)?;
                ServerEvent::InitialState {
                    datasources: initial.state.datasources,
                    links: initial.state.links,
                }
            }
            "DATASOURCES_CHANGED" => {
                let changed: Initial = serde_json::from_str(text)?;
                ServerEvent::DatasourcesChanged {
                    datasources: changed.state.datasources,
                }
            }
            "FIELDS_RECEIVE" => {
                let m: WithId<FieldsBody> = serde_json::from_str(text)?;
                ServerEvent::Fields {
                    request_id: m.request_id,
                    fields: m.body.fields,
                }
            }
            "ITEMS_RECEIVE" => {
                let m: ItemsMessage = serde_json::from_str(text)?;
                ServerEvent::Items {
                    request_id: m.request_id,
                    items: m.items,
                }
            }
            "ERROR" => {
                let m: WithId<ErrorMessage> = serde_json::from_str(text)?;
                ServerEvent::Error {
                    request_id: m.request_id,
                    error: m.body.error,
                }
            }
            "REQUEST_COMPLETED" => {
                let m: Completed = serde_json::from_str(text)?;
                ServerEvent::RequestCompleted {
                    request_id: m.request_id,
                    datasources: m.datasources,
                }
            }
            "REQUEST_CANCELED" => {
                let m: Canceled = serde_json::from_str(text)?;
                ServerEvent::RequestCanceled {
                    request_id: m.request_id,
                }
            }
            "PONG" => {
                let m: Pong = serde_json::from_str(text)?;
                ServerEvent::Pong {
                    t: m.t,
                    server_t: m.server_t,
                    stats: m.stats,
                }
            }
            "SHUTDOWN_NOTICE" => {
                let m: Notice = serde_json::from_str(text)?;
                ServerEvent::ShutdownNotice {
                    drain_ms: m.drain_ms,
                }
            }
            other => ServerEvent::Other {
                kind: other.to_owned(),
            },
        })
    }
}
