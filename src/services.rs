//! The socket for services (`/ws/services`, Damon's protocol): services
//! identify with a token of the config (`[services.<name>]`), then exchange
//! events routed by intent — `GLOBAL` (every other identified service),
//! `GROUP` (the services of a group), `DIRECT` (a service by name, or a
//! connection by id) — and a `REPLY` goes back to whoever sent the event
//! with its id.
//!
//! [`Services`] is the registry every services connection shares (in
//! `App`); [`Peer`] is one connection's side of it, driven by the
//! connection loop like a session.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tributary_protocol::services::{self, op, ServiceMessage};
use tributary_protocol::Frame;

use crate::config::ServiceSettings;
use crate::metrics::Metrics;
use crate::outbox::Outbox;

/// Events whose replies are still routable: the oldest are forgotten first.
const AWAITING_REPLIES: usize = 65_536;
/// The outbox key frames between services travel under.
const SERVICES_KEY: u64 = u64::MAX - 2;

/// One configured service.
struct Credential {
    name: Arc<str>,
    group: Arc<str>,
    token: Vec<u8>,
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

/// The identified services, and the events awaiting their replies.
pub struct Services {
    credentials: Vec<Credential>,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

impl Services {
    pub fn new(
        settings: &std::collections::BTreeMap<String, ServiceSettings>,
        metrics: Arc<Metrics>,
    ) -> Services {
        Services {
            credentials: settings
                .iter()
                .map(|(name, s)| Credential {
                    name: Arc::from(name.as_str()),
                    group: Arc::from(s.group.as_deref().unwrap_or(name)),
                    token: s.token.as_bytes().to_vec(),
                })
                .collect(),
            state: Mutex::new(State::default()),
            metrics,
        }
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
}

impl Peer {
    pub fn new(connection: u64, services: Arc<Services>, outbox: Outbox) -> Peer {
        Peer {
            connection,
            services,
            outbox,
            identified: false,
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
            op::EVENT => self.route(&message, text),
            op::REPLY => self.reply(&message, text),
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
        let token = message
            .data
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

    /// A reply goes back to whoever sent the event with its id.
    fn reply(&mut self, message: &ServiceMessage, text: &str) {
        let Some(key) = message.id_key() else {
            return self.refuse(
                None,
                "unknown_reply",
                "a REPLY needs the id of the event it answers",
            );
        };
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

    /// The connection ended: it leaves the registry.
    pub fn leave(&mut self) {
        if self.identified {
            self.services.state().members.remove(&self.connection);
        }
    }
}
