//! The socket for services (`/ws/services`, Damon's protocol): services
//! identify with a token of the config (`[services.<name>]`), then exchange
//! events routed by intent — `GLOBAL` (every other identified service),
//! `GROUP` (the services of a group), `DIRECT` (a service by name, or a
//! connection by id) — and a `REPLY` goes back to whoever sent the event
//! with its id.
//!
//! [`Services`] is the registry every services connection shares (in
//! `App`); [`Peer`] is one connection's side of it, driven by the
//! connection loop like a session; [`cluster`] serves remote datasources
//! across the nodes of a cluster.

pub mod cluster;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tributary_protocol::services::{self, op, ServiceMessage};
use tributary_protocol::Frame;

use crate::config::ServiceSettings;
use crate::datasources::remote::{Declaration, Link, RemoteDatasource, Route, Routed};
use crate::datasources::{Datasource, Records};
use crate::federation::{Federation, Source};
use crate::live::Broker;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::DatasourceInfo;

/// Events whose replies are still routable: the oldest are forgotten first.
const AWAITING_REPLIES: usize = 65_536;
/// The outbox key frames between services travel under.
const SERVICES_KEY: u64 = u64::MAX - 2;
/// Remote datasources a server holds at most (each is kept once declared):
/// services cannot grow the list, or memory, without bound.
pub const MAX_REMOTE_DATASOURCES: usize = 256;
/// `PUBLISH` events of one connection being indexed at once.
const PUBLISHES_IN_FLIGHT: usize = 8;

/// One configured service.
struct Credential {
    name: Arc<str>,
    group: Arc<str>,
    token: Vec<u8>,
    /// The remote datasources it may serve (`None`: any).
    datasources: Option<Vec<String>>,
}

/// An identified connection.
struct Member {
    name: Arc<str>,
    group: Arc<str>,
    outbox: Outbox,
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Member>,
    /// Event id (its JSON text) → the connection that sent it.
    awaiting: HashMap<String, u64>,
    order: VecDeque<String>,
}

/// The identified services, the events awaiting their replies, and the
/// remote datasources services serve.
pub struct Services {
    credentials: Vec<Credential>,
    state: Mutex<State>,
    /// Remote datasources by id: kept once created, so a datasource whose
    /// service restarts stays listed (unavailable until it is back).
    remotes: Mutex<HashMap<String, (Arc<RemoteDatasource>, Declaration)>>,
    federation: Arc<Federation>,
    /// How remote datasources reach the other nodes.
    pub broker: Arc<Broker>,
    /// How long a remote datasource may take to answer.
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Services {
    pub fn new(
        settings: &std::collections::BTreeMap<String, ServiceSettings>,
        federation: Arc<Federation>,
        broker: Arc<Broker>,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Services {
        Services {
            credentials: settings
                .iter()
                .map(|(name, s)| Credential {
                    name: Arc::from(name.as_str()),
                    group: Arc::from(s.group.as_deref().unwrap_or(name)),
                    token: s.token.as_bytes().to_vec(),
                    datasources: s.datasources.clone(),
                })
                .collect(),
            state: Mutex::new(State::default()),
            remotes: Mutex::new(HashMap::new()),
            federation,
            broker,
            timeout,
            metrics,
        }
    }

    /// The remote datasource a service declared, created (and announced to
    /// every client) when it is the first to serve it.
    fn remote(&self, declaration: &Declaration) -> Result<Arc<RemoteDatasource>, String> {
        let mut remotes = self.remotes();
        if let Some((remote, _)) = remotes.get(&declaration.id) {
            return Ok(Arc::clone(remote));
        }
        let id = &declaration.id;
        if remotes.len() >= MAX_REMOTE_DATASOURCES {
            return Err(format!(
                "this server holds {MAX_REMOTE_DATASOURCES} remote datasources, its most: datasource `{id}` cannot be added"
            ));
        }
        if self.federation.source_by_id(id).is_some() {
            return Err(format!(
                "datasource id `{id}` belongs to a configured datasource"
            ));
        }
        let remote = Arc::new(RemoteDatasource::new(declaration, self.broker.node())?);
        let datasource: Arc<dyn Datasource> = Arc::clone(&remote) as Arc<dyn Datasource>;
        self.federation.add(Source {
            info: DatasourceInfo {
                id: id.clone(),
                name: declaration.name.clone().unwrap_or_else(|| id.clone()),
                kind: "remote".into(),
            },
            datasource,
            timeout: self.timeout,
        })?;
        tracing::info!(datasource = %id, "remote datasource joined");
        remotes.insert(id.clone(), (Arc::clone(&remote), declaration.clone()));
        Ok(remote)
    }

    fn remotes(&self) -> MutexGuard<'_, HashMap<String, (Arc<RemoteDatasource>, Declaration)>> {
        self.remotes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remote datasource `id`, if a service ever declared it.
    pub fn remote_by_id(&self, id: &str) -> Option<Arc<RemoteDatasource>> {
        self.remotes().get(id).map(|(remote, _)| Arc::clone(remote))
    }

    /// The remote datasources services of this node serve now.
    pub fn served_here(&self) -> Vec<Declaration> {
        self.remotes()
            .values()
            .filter(|(remote, _)| remote.local_providers() > 0)
            .map(|(_, declaration)| declaration.clone())
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The service a token belongs to (compared in constant time).
    fn credential(&self, token: &str) -> Option<&Credential> {
        let mut found = None;
        for credential in &self.credentials {
            if bool::from(credential.token.as_slice().ct_eq(token.as_bytes())) {
                found = Some(credential);
            }
        }
        found
    }

    fn deliver(&self, outbox: &Outbox, frame: Frame) -> bool {
        let counter = &self.metrics.service_messages;
        crate::live::deliver_counted(
            outbox,
            SERVICES_KEY,
            frame,
            counter,
            &self.metrics,
            "service event",
        )
    }
}

/// Why a services connection closes.
pub struct Close {
    pub code: u16,
    pub reason: String,
}

/// One services connection's side of the socket.
pub struct Peer {
    connection: u64,
    services: Arc<Services>,
    outbox: Outbox,
    identified: bool,
    /// The remote datasource this connection serves, if it declared one.
    serves: Option<(Arc<RemoteDatasource>, Declaration)>,
    publishing: Arc<AtomicUsize>,
}

/// A services connection as a remote datasource sends to it.
struct PeerLink {
    outbox: Outbox,
    services: Arc<Services>,
}

impl Link for PeerLink {
    fn send(&self, message: String) -> bool {
        self.services
            .deliver(&self.outbox, services::forward(&message))
    }
}

impl Peer {
    pub fn new(connection: u64, services: Arc<Services>, outbox: Outbox) -> Peer {
        Peer {
            connection,
            services,
            outbox,
            identified: false,
            serves: None,
            publishing: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn send(&self, message: &ServiceMessage) {
        self.services.deliver(&self.outbox, message.encode());
    }

    fn refuse(&self, id: Option<Value>, code: &str, message: &str) {
        self.send(&ServiceMessage::error(id, code, message));
    }

    /// A frame that is not a message: an `ERROR` event (before `IDENTIFY`,
    /// `DISCONNECT`).
    pub fn invalid(&mut self, reason: &str) -> Option<Close> {
        if !self.identified {
            return Some(self.disconnect(&format!("identify first ({reason})")));
        }
        self.refuse(None, "invalid_message", reason);
        None
    }

    fn disconnect(&self, reason: &str) -> Close {
        self.send(&ServiceMessage::disconnect(reason));
        Close {
            // Policy violation, as the client socket closes refused clients.
            code: 1008,
            reason: reason.to_owned(),
        }
    }

    /// Handles one message; `Some` ends the connection.
    pub fn handle(&mut self, message: ServiceMessage, text: &str) -> Option<Close> {
        if !self.identified {
            return self.identify(message);
        }
        match message.op {
            op::EVENT if self.is_publish(&message) => self.publish(message),
            op::EVENT => self.route(&message, text),
            op::REPLY => self.reply(message, text),
            op::PING => self.send(&ServiceMessage::pong(message.id)),
            op::PONG => {}
            op::IDENTIFY => self.refuse(message.id, "already_identified", "this connection has identified already"),
            op::DISCONNECT => {
                return Some(Close {
                    code: 1000,
                    reason: "disconnected by the service".into(),
                })
            }
            other => self.refuse(
                message.id,
                "unknown_op",
                &format!("unknown op {other}; known: 0 EVENT, 1 IDENTIFY, 2 DISCONNECT, 3 PING, 4 PONG, 5 REPLY"),
            ),
        }
        None
    }

    fn identify(&mut self, message: ServiceMessage) -> Option<Close> {
        if message.op != op::IDENTIFY {
            return Some(
                self.disconnect("identify first: send {\"op\": 1, \"data\": {\"token\": \"…\"}}"),
            );
        }
        let data = message.data_value();
        let token = data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(Value::as_str);
        let Some(token) = token else {
            return Some(self.disconnect("IDENTIFY needs data.token"));
        };
        let Some(credential) = self.services.credential(token) else {
            return Some(self.disconnect("wrong token"));
        };
        let (name, group) = (Arc::clone(&credential.name), Arc::clone(&credential.group));
        let declared = data.as_ref().and_then(|d| d.get("datasource"));
        if let Some(declared) = declared {
            let declaration = match Declaration::read(declared) {
                Ok(declaration) => declaration,
                Err(reason) => return Some(self.disconnect(&reason)),
            };
            if let Some(allowed) = &credential.datasources {
                if !allowed.contains(&declaration.id) {
                    return Some(self.disconnect(&format!(
                        "service `{name}` may not serve datasource `{}`",
                        declaration.id
                    )));
                }
            }
            let remote = match self.services.remote(&declaration) {
                Ok(remote) => remote,
                Err(reason) => return Some(self.disconnect(&reason)),
            };
            self.serves = Some((remote, declaration));
        }
        self.identified = true;
        self.services.state().members.insert(
            self.connection,
            Member {
                name: Arc::clone(&name),
                group: Arc::clone(&group),
                outbox: self.outbox.clone(),
            },
        );
        tracing::info!(service = %name, group = %group, "service identified");
        self.send(&ServiceMessage::reply(
            message.id,
            json!({"name": &*name, "group": &*group, "connection": self.connection.to_string()}),
        ));
        // Only now may requests reach it: the answer to IDENTIFY comes first.
        if let Some((remote, declaration)) = &self.serves {
            let link = Arc::new(PeerLink {
                outbox: self.outbox.clone(),
                services: Arc::clone(&self.services),
            });
            remote.attach(Route::Connection(self.connection), link, declaration);
            if remote.local_providers() == 1 {
                cluster::announce_serving(&self.services.broker, declaration);
            }
        }
        None
    }

    /// An event goes to every connection its intent names, as it was sent.
    fn route(&mut self, message: &ServiceMessage, text: &str) {
        let intent = message.intent.as_ref();
        let target = intent
            .and_then(|i| i.target.as_deref())
            .unwrap_or(services::GLOBAL);
        let identifier = intent
            .and_then(|i| i.identifier.as_ref())
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let frame = services::forward(text);
        let mut state = self.services.state();
        let receivers: Vec<&Outbox> = match (target, identifier.as_deref()) {
            (services::GLOBAL, _) => state
                .members
                .iter()
                .filter(|(id, _)| **id != self.connection)
                .map(|(_, m)| &m.outbox)
                .collect(),
            (services::GROUP, Some(group)) => state
                .members
                .iter()
                .filter(|(id, m)| **id != self.connection && &*m.group == group)
                .map(|(_, m)| &m.outbox)
                .collect(),
            (services::DIRECT, Some(who)) => state
                .members
                .iter()
                .filter(|(id, m)| {
                    **id != self.connection && (&*m.name == who || id.to_string() == who)
                })
                .map(|(_, m)| &m.outbox)
                .collect(),
            (services::GROUP | services::DIRECT, None) => {
                drop(state);
                return self.refuse(
                    message.id.clone(),
                    "invalid_intent",
                    &format!("intent {target} needs an identifier"),
                );
            }
            (other, _) => {
                let other = other.to_owned();
                drop(state);
                return self.refuse(
                    message.id.clone(),
                    "invalid_intent",
                    &format!("unknown intent target `{other}`; known: GLOBAL, GROUP, DIRECT"),
                );
            }
        };
        if receivers.is_empty() {
            drop(state);
            return self.refuse(
                message.id.clone(),
                "no_receiver",
                &format!(
                    "no identified service matches intent {target}{}",
                    identifier.map(|i| format!(" `{i}`")).unwrap_or_default()
                ),
            );
        }
        for outbox in receivers {
            self.services.deliver(outbox, frame.clone());
        }
        if let Some(key) = message.id_key() {
            let state = &mut *state;
            if state
                .awaiting
                .insert(key.clone(), self.connection)
                .is_none()
            {
                state.order.push_back(key);
                while state.order.len() > AWAITING_REPLIES {
                    if let Some(old) = state.order.pop_front() {
                        state.awaiting.remove(&old);
                    }
                }
            }
        }
    }

    /// A reply goes back to whoever sent the event with its id: a request
    /// of the remote datasource this connection serves, or another service.
    fn reply(&mut self, message: ServiceMessage, text: &str) {
        let Some(key) = message.id_key() else {
            return self.refuse(
                None,
                "unknown_reply",
                "a REPLY needs the id of the event it answers",
            );
        };
        if let Some((remote, _)) = &self.serves {
            let route = Route::Connection(self.connection);
            let routed = remote.reply(&route, &key, message.data, text.len());
            let outcome = match routed {
                Routed::Taken => "taken",
                Routed::Late => "late",
                Routed::Overflow => "overflow",
                Routed::NotOurs => "",
            };
            if !outcome.is_empty() {
                self.services
                    .metrics
                    .remote_replies
                    .with_label_values(&[remote.id(), outcome])
                    .inc();
            }
            match routed {
                Routed::Taken | Routed::Late => return,
                Routed::Overflow => {
                    return self.refuse(
                        message.id,
                        "reply_overflow",
                        "replies arrived faster than the client reads them: the request has failed; send fewer or smaller replies",
                    )
                }
                Routed::NotOurs => {}
            }
        }
        let state = self.services.state();
        let sender = state
            .awaiting
            .get(&key)
            .and_then(|from| state.members.get(from));
        match sender {
            Some(member) => {
                self.services
                    .deliver(&member.outbox, services::forward(text));
            }
            None => {
                drop(state);
                self.refuse(
                    message.id.clone(),
                    "unknown_reply",
                    &format!("no event awaiting a reply has id {key} (or its sender has gone)"),
                );
            }
        }
    }

    /// `PUBLISH` without an intent, from a service serving a datasource:
    /// records for that datasource's live queries.
    fn is_publish(&self, message: &ServiceMessage) -> bool {
        self.serves.is_some()
            && message.intent.is_none()
            && message.event.as_deref() == Some("PUBLISH")
    }

    /// Publishes `data.records` to the served datasource's live queries;
    /// answered by a `REPLY` (`{records}`) or an `ERROR` event.
    fn publish(&mut self, message: ServiceMessage) {
        let Some(remote) = self.serves.as_ref().map(|(remote, _)| Arc::clone(remote)) else {
            return;
        };
        let records = message
            .data_value()
            .and_then(|mut d| d.get_mut("records").map(serde_json::Value::take));
        let records: Records = match records.map(serde_json::from_value) {
            Some(Ok(records)) => records,
            _ => {
                return self.refuse(
                    message.id,
                    "invalid_publish",
                    "PUBLISH needs data.records: an array of JSON objects",
                )
            }
        };
        if self.publishing.fetch_add(1, Ordering::AcqRel) >= PUBLISHES_IN_FLIGHT {
            self.publishing.fetch_sub(1, Ordering::AcqRel);
            return self.refuse(
                message.id,
                "busy",
                &format!("{PUBLISHES_IN_FLIGHT} PUBLISH events are being indexed; wait for their replies"),
            );
        }
        let (services, outbox, publishing, id) = (
            Arc::clone(&self.services),
            self.outbox.clone(),
            Arc::clone(&self.publishing),
            message.id,
        );
        tokio::spawn(async move {
            let answer = match remote.publish(records).await {
                Ok(appended) => ServiceMessage::reply(
                    id,
                    json!({"records": appended.records, "unindexed_fields": appended.unindexed_fields}),
                ),
                Err(error) => ServiceMessage::error(id, "publish_failed", &error.to_string()),
            };
            publishing.fetch_sub(1, Ordering::AcqRel);
            services.deliver(&outbox, answer.encode());
        });
    }

    /// The connection ended: it leaves the registry (and stops serving its
    /// datasource: its running requests move to another service).
    pub fn leave(&mut self) {
        if self.identified {
            self.services.state().members.remove(&self.connection);
        }
        if let Some((remote, _)) = self.serves.take() {
            remote.detach(&Route::Connection(self.connection));
            if remote.local_providers() == 0 {
                cluster::announce_left(&self.services.broker, remote.id());
            }
        }
    }
}
