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

use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;
use tributary_protocol::services::{self, op, ServiceMessage};
use tributary_protocol::Frame;

use crate::config::ServiceSettings;
use crate::datasources::remote::{Declaration, Link, RemoteDatasource, ReplyFaults, Route, Routed};
use crate::datasources::{Datasource, Records};
use crate::federation::{Federation, Source};
use crate::live::publishing::Publishing;
use crate::live::Broker;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::DatasourceInfo;
use crate::rate::RateLimiter;

/// Events of one connection whose replies are still routable: its oldest
/// are forgotten first, and all of them when it leaves.
pub const AWAITING_PER_CONNECTION: usize = 1024;
/// The longest id (its JSON text) of an event another service may answer:
/// ids are kept until their sender leaves, so they are small.
pub const MAX_EVENT_ID_BYTES: usize = 256;
/// The share of a service's outbox that events from other services may
/// fill (the rest is the server's, for its own requests): a service that
/// floods another is refused (`receiver_busy`), never the receiver closed.
const ROUTED_SHARE: usize = 2;
/// In a service's `datasources`: any id no other service's table lists.
const ANY: &str = "*";
/// Events only the server sends to services (requests of a remote
/// datasource): a service sending one is refused, so none can ask another
/// for its rows as if it were the server.
const SERVER_EVENTS: [&str; 5] = ["SEARCH", "FIELDS", "EXPAND", "HEALTH", "CANCEL"];
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
    /// The remote datasources it may serve (none unless listed).
    datasources: Vec<String>,
}

/// An identified connection.
struct Member {
    name: Arc<str>,
    group: Arc<str>,
    outbox: Outbox,
    /// Its events awaiting replies, oldest first: (receiver, event id).
    sent: VecDeque<(u64, String)>,
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Member>,
    /// (The connection an event went to, its id as JSON text) → the
    /// connection that sent it: a reply is routed by who answers and what,
    /// so no other service can take it by reusing the id.
    awaiting: HashMap<(u64, String), u64>,
}

impl State {
    /// Forgets the events a connection sent, and those sent to it.
    fn forget(&mut self, connection: u64) {
        if let Some(member) = self.members.remove(&connection) {
            for key in member.sent {
                self.awaiting.remove(&key);
            }
        }
        self.awaiting
            .retain(|(receiver, _), sender| *receiver != connection && *sender != connection);
    }
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
    /// Where a service's `PUBLISH` goes: as records published by HTTP.
    publishing: Arc<Publishing>,
    /// How long a remote datasource may take to answer.
    timeout: Duration,
    /// How long a remote datasource no service serves stays listed.
    linger: Duration,
    /// Bytes a second one connection may send other services.
    event_bytes_per_second: u32,
    metrics: Arc<Metrics>,
}

impl Services {
    pub fn new(
        settings: &std::collections::BTreeMap<String, ServiceSettings>,
        federation: Arc<Federation>,
        broker: Arc<Broker>,
        publishing: Arc<Publishing>,
        timeout: Duration,
        limits: &crate::config::Limits,
        metrics: Arc<Metrics>,
    ) -> Services {
        Services {
            credentials: settings
                .iter()
                .map(|(name, s)| Credential {
                    name: Arc::from(name.as_str()),
                    group: Arc::from(s.group.as_deref().unwrap_or(name)),
                    token: s.token.as_bytes().to_vec(),
                    datasources: s.datasources.clone().unwrap_or_default(),
                })
                .collect(),
            state: Mutex::new(State::default()),
            remotes: Mutex::new(HashMap::new()),
            federation,
            broker,
            publishing,
            timeout,
            linger: limits.remote_linger,
            event_bytes_per_second: limits.max_service_bytes_per_second,
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
        let faults = ReplyFaults {
            past_size: self
                .metrics
                .remote_results_past_size
                .with_label_values(&[id.as_str()]),
            without_total: self
                .metrics
                .remote_replies_without_total
                .with_label_values(&[id.as_str()]),
        };
        let remote = Arc::new(RemoteDatasource::new(
            declaration,
            self.broker.node(),
            faults,
        )?);
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

    /// Removes the remote datasource `id` once no service has served it
    /// (here or on another node) for `limits.remote_linger`: its place
    /// among [`MAX_REMOTE_DATASOURCES`] is freed, and clients are told.
    pub fn release_when_unserved(self: &Arc<Self>, id: &str) {
        let (services, id) = (Arc::clone(self), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(services.linger).await;
            let mut remotes = services.remotes();
            let unserved = remotes
                .get(&id)
                .is_some_and(|(remote, _)| remote.providers() == 0);
            if unserved {
                remotes.remove(&id);
                drop(remotes);
                services.federation.remove(&id);
                tracing::info!(datasource = %id, "remote datasource left: no service serves it");
            }
        });
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

    /// Queues an event of another service within the receiver's share of
    /// its outbox; `false` when it is full (the sender is told) or closed.
    fn deliver_routed(&self, outbox: &Outbox, frame: Frame) -> bool {
        let share = outbox.budget() / ROUTED_SHARE;
        match outbox.try_send_within(SERVICES_KEY, frame, share) {
            Ok(()) => {
                self.metrics.service_messages.inc();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether a service of `credential` may serve datasource `id`: listed
    /// in its table, or its table lists `"*"` (any id) and no other
    /// service's table names `id`.
    fn may_serve(&self, credential: &Credential, id: &str) -> bool {
        if credential.datasources.iter().any(|listed| listed == id) {
            return true;
        }
        credential.datasources.iter().any(|listed| listed == ANY)
            && !self
                .credentials
                .iter()
                .any(|other| other.datasources.iter().any(|listed| listed == id))
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
    /// What it may still send other services (events, and replies to
    /// theirs): past it, it is closed, never its receivers.
    to_others: RateLimiter,
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
        let to_others = RateLimiter::new(services.event_bytes_per_second);
        Peer {
            connection,
            services,
            outbox,
            identified: false,
            serves: None,
            publishing: Arc::new(AtomicUsize::new(0)),
            to_others,
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

    /// Takes `bytes` sent towards other services from the connection's
    /// allowance; past it, the connection is closed (4420).
    fn spend(&mut self, bytes: usize) -> Option<Close> {
        if self.to_others.allow_n(bytes as f64) {
            return None;
        }
        self.services
            .metrics
            .refused("limits.max_service_bytes_per_second");
        Some(Close {
            code: crate::protocol::CLOSE_TOO_MUCH,
            reason: format!(
                "more than {} bytes a second sent to other services (`limits.max_service_bytes_per_second`)",
                self.services.event_bytes_per_second
            ),
        })
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
            op::EVENT => {
                if let Some(close) = self.spend(text.len()) {
                    return Some(close);
                }
                self.route(&message, text)
            }
            op::REPLY => return self.reply(message, text),
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
            // A token serves only the datasources its table lists: no
            // service can take over another's datasource, or declare more.
            if !self.services.may_serve(credential, &declaration.id) {
                let listed = if credential.datasources.is_empty() {
                    "its token lists none".to_owned()
                } else {
                    format!("its token lists {}", credential.datasources.join(", "))
                };
                return Some(self.disconnect(&format!(
                    "service `{name}` may not serve datasource `{}`: {listed} (`services.{name}.datasources`)",
                    declaration.id
                )));
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
                sent: VecDeque::new(),
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
            // Released in the instant before it was attached: this service
            // identifies again and gets a new one.
            let current = self.services.remote_by_id(&declaration.id);
            if !current.is_some_and(|current| Arc::ptr_eq(&current, remote)) {
                return Some(self.disconnect(
                    "the datasource was being removed as this service identified; identify again",
                ));
            }
            if remote.local_providers() == 1 {
                cluster::announce_serving(&self.services.broker, declaration);
            }
        }
        None
    }

    /// An event goes to every connection its intent names, as it was sent.
    fn route(&mut self, message: &ServiceMessage, text: &str) {
        if let Some(event) = message
            .event
            .as_deref()
            .filter(|e| SERVER_EVENTS.iter().any(|s| s.eq_ignore_ascii_case(e)))
        {
            self.services.metrics.refused("services.server_events");
            return self.refuse(
                message.id.clone(),
                "forbidden_event",
                &format!("`{event}` events come only from the server; name yours otherwise"),
            );
        }
        let key = message.id_key();
        if key.as_ref().is_some_and(|k| k.len() > MAX_EVENT_ID_BYTES) {
            self.services.metrics.refused("services.event_id_bytes");
            return self.refuse(
                None,
                "invalid_id",
                &format!("an event id may have at most {MAX_EVENT_ID_BYTES} bytes (as JSON)"),
            );
        }
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
        let me = self.connection;
        let receivers: Vec<(u64, &Outbox)> = match (target, identifier.as_deref()) {
            (services::GLOBAL, _) => state
                .members
                .iter()
                .filter(|(id, _)| **id != me)
                .map(|(id, m)| (*id, &m.outbox))
                .collect(),
            (services::GROUP, Some(group)) => state
                .members
                .iter()
                .filter(|(id, m)| **id != me && &*m.group == group)
                .map(|(id, m)| (*id, &m.outbox))
                .collect(),
            (services::DIRECT, Some(who)) => state
                .members
                .iter()
                .filter(|(id, m)| **id != me && (&*m.name == who || id.to_string() == who))
                .map(|(id, m)| (*id, &m.outbox))
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
        // An id another connection's event awaits a reply under, at the
        // same receiver, is refused: its reply is that connection's.
        if let Some(key) = &key {
            let taken = receivers.iter().any(|(receiver, _)| {
                state
                    .awaiting
                    .get(&(*receiver, key.clone()))
                    .is_some_and(|sender| *sender != me)
            });
            if taken {
                drop(state);
                self.services.metrics.refused("services.duplicate_id");
                return self.refuse(
                    message.id.clone(),
                    "duplicate_id",
                    "another service's event with this id awaits a reply there; use ids of your own",
                );
            }
        }
        let mut delivered = Vec::with_capacity(receivers.len());
        let mut busy = 0;
        for (receiver, outbox) in receivers {
            if self.services.deliver_routed(outbox, frame.clone()) {
                delivered.push(receiver);
            } else if !outbox.is_closed() {
                busy += 1;
            }
        }
        if let Some(key) = key {
            let state = &mut *state;
            for receiver in &delivered {
                let entry = (*receiver, key.clone());
                if state.awaiting.insert(entry.clone(), me).is_none() {
                    if let Some(member) = state.members.get_mut(&me) {
                        member.sent.push_back(entry);
                    }
                }
            }
            if let Some(member) = state.members.get_mut(&me) {
                while member.sent.len() > AWAITING_PER_CONNECTION {
                    if let Some(old) = member.sent.pop_front() {
                        state.awaiting.remove(&old);
                    }
                }
            }
        }
        drop(state);
        if busy > 0 {
            self.services.metrics.refused("services.receiver_busy");
            self.refuse(
                message.id.clone(),
                "receiver_busy",
                &format!(
                    "{busy} receiver(s) hold as many events from other services as they may; the event did not reach them: send more slowly"
                ),
            );
        }
    }

    /// A reply goes back to whoever sent the event with its id: a request
    /// of the remote datasource this connection serves, or another service.
    fn reply(&mut self, message: ServiceMessage, text: &str) -> Option<Close> {
        let Some(key) = message.id_key() else {
            self.refuse(
                None,
                "unknown_reply",
                "a REPLY needs the id of the event it answers",
            );
            return None;
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
                Routed::Taken | Routed::Late => return None,
                Routed::Overflow => {
                    self.refuse(
                        message.id,
                        "reply_overflow",
                        "replies arrived faster than the client reads them: the request has failed; send fewer or smaller replies",
                    );
                    return None;
                }
                Routed::NotOurs => {}
            }
        }
        // A reply to another service's event.
        if let Some(close) = self.spend(text.len()) {
            return Some(close);
        }
        let state = self.services.state();
        let sender = state
            .awaiting
            .get(&(self.connection, key.clone()))
            .and_then(|from| state.members.get(from));
        match sender {
            Some(member) => {
                if !self
                    .services
                    .deliver_routed(&member.outbox, services::forward(text))
                    && !member.outbox.is_closed()
                {
                    drop(state);
                    self.services.metrics.refused("services.receiver_busy");
                    self.refuse(
                        message.id.clone(),
                        "receiver_busy",
                        "the event's sender holds as many messages from other services as it may; the reply did not reach it",
                    );
                }
            }
            None => {
                drop(state);
                self.refuse(
                    message.id.clone(),
                    "unknown_reply",
                    &format!("no event sent to this connection awaits a reply with id {key} (or its sender has gone)"),
                );
            }
        }
        None
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
        let records: Option<Result<Records, _>> = records.map(serde_json::from_value);
        let records: Records = match records {
            Some(Ok(records)) => records.into_iter().map(flat_record).collect(),
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
            // The same path as HTTP publishing: kept, positioned, on every node.
            let source = services.federation.source_by_id(remote.id());
            let answer = match source {
                None => ServiceMessage::error(id, "publish_failed", "the datasource is gone"),
                Some(source) => match services.publishing.publish(&source, records).await {
                    Ok(published) => ServiceMessage::reply(
                        id,
                        json!({
                            "records": published.records,
                            "unindexed_fields": published.unindexed_fields,
                            "offset": published.position.offset,
                            "epoch": published.position.epoch,
                        }),
                    ),
                    Err(refused) => {
                        let mut message = refused.error.to_string();
                        if refused.maybe_kept {
                            message.push_str("; they may have been kept all the same: publish them again with the same ids");
                        }
                        ServiceMessage::error(id, "publish_failed", &message)
                    }
                },
            };
            publishing.fetch_sub(1, Ordering::AcqRel);
            services.deliver(&outbox, answer.encode());
        });
    }

    /// The connection ended: it leaves the registry (and stops serving its
    /// datasource: its running requests move to another service).
    pub fn leave(&mut self) {
        if self.identified {
            self.services.state().forget(self.connection);
        }
        if let Some((remote, _)) = self.serves.take() {
            remote.detach(&Route::Connection(self.connection));
            if remote.local_providers() == 0 {
                cluster::announce_left(&self.services.broker, remote.id());
            }
            if remote.providers() == 0 {
                self.services.release_when_unserved(remote.id());
            }
        }
    }
}

/// A published record as the datasource indexes it: flat (`{"id", "name",
/// …}`). One in the shape `SEARCH` replies carry (`{"id", "fields": {…}}`,
/// perhaps with `highlight`) is read as `{"id", …fields}`, so a plugin may
/// publish what it would return.
fn flat_record(mut record: Map<String, Value>) -> Map<String, Value> {
    let item_shaped = matches!(record.get("fields"), Some(Value::Object(_)))
        && record
            .keys()
            .all(|key| matches!(key.as_str(), "id" | "fields" | "highlight"));
    if !item_shaped {
        return record;
    }
    let Some(Value::Object(fields)) = record.remove("fields") else {
        return record;
    };
    let mut flat = Map::new();
    if let Some(id) = record.remove("id") {
        flat.insert("id".to_owned(), id);
    }
    flat.extend(fields);
    flat
}
