//! Remote datasources across the nodes of a cluster, through the broker:
//! a service connected to one node serves requests arriving at any node.
//!
//! Two kinds of topics:
//! - `remotes`: who serves what. A node announces each remote datasource
//!   its services serve (`serving`, with the declaration) when the first of
//!   them identifies and every [`HEARTBEAT`], `left` when the last leaves,
//!   and `hello` when it starts (the others then announce at once). A node
//!   not heard of for [`EXPIRES`] no longer serves anything.
//! - `node:<id>`: one node's inbox. A request for a datasource this node
//!   has no service for goes to a node that has one (`event`: the event as
//!   its service would get it); that node asks its service with the same id
//!   and sends each `reply` back, or `gone` when its service left.
//!
//! With the `memory` broker there is one node and none of this runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use super::Services;
use crate::datasources::remote::{Declaration, Link, ReplyTo, Route};
use crate::live::Broker;

/// How often a node announces what its services serve.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node not heard of for this long is taken for dead.
pub const EXPIRES: Duration = Duration::from_secs(8);

const REMOTES: &str = "remotes";

fn inbox(node: &str) -> String {
    format!("node:{node}")
}

#[derive(Serialize, Deserialize)]
struct Announcement {
    /// `serving`, `left` or `hello`.
    kind: String,
    node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    declaration: Option<Declaration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

/// A message to one node's inbox.
#[derive(Serialize, Deserialize)]
struct Relayed<'a> {
    /// `event`, `reply` or `gone`.
    kind: &'a str,
    from: String,
    datasource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default)]
    bytes: usize,
    /// The event (`event`) or the reply's data (`reply`), as written.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    body: Option<&'a RawValue>,
}

fn encode<T: Serialize>(message: &T) -> Bytes {
    // Strings, numbers and raw JSON only: serialisation cannot fail.
    Bytes::from(serde_json::to_vec(message).unwrap_or_default())
}

/// Tells the other nodes something about this one (`serving` a
/// declaration, `left` a datasource, `hello`).
fn announce(broker: &Broker, kind: &str, declaration: Option<&Declaration>, id: Option<&str>) {
    if !broker.has_other_nodes() {
        return;
    }
    broker.publish(
        REMOTES,
        encode(&Announcement {
            kind: kind.to_owned(),
            node: broker.node().to_owned(),
            declaration: declaration.cloned(),
            id: id.map(str::to_owned),
        }),
    );
}

/// Tells the cluster this node's services serve `declaration`.
pub fn announce_serving(broker: &Broker, declaration: &Declaration) {
    announce(broker, "serving", Some(declaration), None);
}

/// Tells the cluster this node's services no longer serve datasource `id`.
pub fn announce_left(broker: &Broker, id: &str) {
    announce(broker, "left", None, Some(id));
}

/// Events for another node's services.
struct NodeLink {
    broker: Arc<Broker>,
    node: String,
    datasource: String,
}

impl Link for NodeLink {
    fn send(&self, message: String) -> bool {
        let Ok(body) = RawValue::from_string(message) else {
            return false;
        };
        self.broker.publish(
            &inbox(&self.node),
            encode(&Relayed {
                kind: "event",
                from: self.broker.node().to_owned(),
                datasource: self.datasource.clone(),
                key: None,
                bytes: 0,
                body: Some(&body),
            }),
        )
    }
}

/// Replies for the node that relayed a request here.
struct NodeReplies {
    broker: Arc<Broker>,
    node: String,
    datasource: String,
}

impl NodeReplies {
    fn send(&self, kind: &str, key: &str, body: Option<&RawValue>, bytes: usize) {
        self.broker.publish(
            &inbox(&self.node),
            encode(&Relayed {
                kind,
                from: self.broker.node().to_owned(),
                datasource: self.datasource.clone(),
                key: Some(key.to_owned()),
                bytes,
                body,
            }),
        );
    }
}

impl ReplyTo for NodeReplies {
    fn reply(&self, key: &str, data: Option<&RawValue>, bytes: usize) {
        self.send("reply", key, data, bytes);
    }

    fn gone(&self, key: &str) {
        self.send("gone", key, None, 0);
    }
}

/// Runs this node's part of the cluster until the broker goes away.
pub async fn run(services: Arc<Services>) {
    let broker = Arc::clone(&services.broker);
    if !broker.has_other_nodes() {
        return;
    }
    let mut remotes = broker.subscribe(REMOTES).await;
    let mut mine = broker.subscribe(&inbox(broker.node())).await;
    announce(&broker, "hello", None, None);
    // (node, datasource) → when it last said it serves it.
    let mut seen: HashMap<(String, String), Instant> = HashMap::new();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            message = remotes.recv() => match message {
                Ok(payload) => on_announcement(&services, &payload, &mut seen),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            message = mine.recv() => match message {
                Ok(payload) => on_relayed(&services, &payload),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "cluster: relayed messages were missed; their requests time out");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = heartbeat.tick() => {
                for declaration in services.served_here() {
                    announce_serving(&broker, &declaration);
                }
                seen.retain(|(node, id), at| {
                    let alive = at.elapsed() < EXPIRES;
                    if !alive {
                        tracing::info!(%node, datasource = %id, "cluster: node not heard of; no longer routed to");
                        if let Some(remote) = services.remote_by_id(id) {
                            remote.detach(&Route::Node(Arc::from(node.as_str())));
                            if remote.providers() == 0 {
                                services.release_when_unserved(id);
                            }
                        }
                    }
                    alive
                });
            }
        }
    }
}

fn on_announcement(
    services: &Arc<Services>,
    payload: &[u8],
    seen: &mut HashMap<(String, String), Instant>,
) {
    let Ok(announcement) = serde_json::from_slice::<Announcement>(payload) else {
        tracing::warn!("cluster: an unreadable announcement");
        return;
    };
    let broker = &services.broker;
    if announcement.node == broker.node() {
        return;
    }
    let route = Route::Node(Arc::from(announcement.node.as_str()));
    match (
        announcement.kind.as_str(),
        announcement.declaration,
        announcement.id,
    ) {
        ("serving", Some(declaration), _) => {
            let remote = match services.remote(&declaration) {
                Ok(remote) => remote,
                Err(reason) => {
                    tracing::warn!(node = %announcement.node, datasource = %declaration.id, %reason, "cluster: a remote datasource refused");
                    return;
                }
            };
            seen.insert(
                (announcement.node.clone(), declaration.id.clone()),
                Instant::now(),
            );
            if !remote.is_served_by(&route) {
                tracing::info!(node = %announcement.node, datasource = %declaration.id, "cluster: served by another node");
                let link = Arc::new(NodeLink {
                    broker: Arc::clone(broker),
                    node: announcement.node,
                    datasource: declaration.id.clone(),
                });
                remote.attach(route, link, &declaration);
            }
        }
        ("left", _, Some(id)) => {
            seen.remove(&(announcement.node, id.clone()));
            if let Some(remote) = services.remote_by_id(&id) {
                remote.detach(&route);
                if remote.providers() == 0 {
                    services.release_when_unserved(&id);
                }
            }
        }
        ("hello", _, _) => {
            for declaration in services.served_here() {
                announce_serving(broker, &declaration);
            }
        }
        _ => tracing::warn!(kind = %announcement.kind, "cluster: an unknown announcement"),
    }
}

fn on_relayed(services: &Arc<Services>, payload: &[u8]) {
    let Ok(relayed) = serde_json::from_slice::<Relayed>(payload) else {
        tracing::warn!("cluster: an unreadable relayed message");
        return;
    };
    let Some(remote) = services.remote_by_id(&relayed.datasource) else {
        return;
    };
    let route = Route::Node(Arc::from(relayed.from.as_str()));
    match (relayed.kind, relayed.key, relayed.body) {
        ("event", _, Some(body)) => {
            let Ok(event) = tributary_protocol::services::decode(body.get()) else {
                return;
            };
            let id = match &event.id {
                Some(serde_json::Value::String(id)) => id.clone(),
                _ => String::new(),
            };
            let name = event.event.as_deref().unwrap_or_default();
            if name == "CANCEL" {
                let canceled = event
                    .data_value()
                    .and_then(|d| d.get("id").and_then(|i| i.as_str().map(str::to_owned)));
                if let Some(canceled) = canceled {
                    remote.cancel_relay(&canceled);
                }
                return;
            }
            let replies = Arc::new(NodeReplies {
                broker: Arc::clone(&services.broker),
                node: relayed.from.clone(),
                datasource: relayed.datasource.clone(),
            });
            let data = event.data.unwrap_or_else(|| {
                RawValue::from_string("{}".into()).unwrap_or_else(|_| RawValue::NULL.to_owned())
            });
            if id.is_empty()
                || !remote.relay(&id, name, &data, Arc::clone(&replies) as Arc<dyn ReplyTo>)
            {
                // No service here any more: the asking node moves on.
                replies.gone(&serde_json::Value::String(id).to_string());
            }
        }
        ("reply", Some(key), body) => {
            remote.reply(&route, &key, body.map(ToOwned::to_owned), relayed.bytes);
        }
        ("gone", Some(key), _) => remote.drop_pending(&route, &key),
        _ => tracing::warn!(kind = relayed.kind, "cluster: an unknown relayed message"),
    }
}
