//! The `redis` broker: Redis pub/sub through `fred`, so a publication
//! reaches the subscribers of every node on the same Redis and `prefix`; a
//! stream is a Redis Stream (kept whole, or its latest `history_size`
//! entries for `history_ttl`: [`Retention`]), read from its oldest entry by
//! a node that starts. Publishing never waits on the network: messages are queued
//! (bounded) and sent by one task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use tokio::sync::{broadcast, mpsc};

use super::{new_node_id, Backend, NotAppended, Retention, StreamEntry, Topics};
use crate::config::BrokerSettings;
use crate::datasources::Position;

/// How long an append may wait for Redis's answer.
const APPEND_TIMEOUT: Duration = Duration::from_millis(2500);
/// Messages waiting to be sent to Redis; past that, publishing fails.
const OUTGOING: usize = 65_536;
/// Bytes waiting to be sent to Redis; past that, publishing fails (while
/// Redis is away or slow, memory stays bounded whatever is published).
const OUTGOING_BYTES: usize = 64 << 20;

/// One client publishing, one subscribed.
pub(super) struct RedisBroker {
    node: Arc<str>,
    topics: Arc<Topics>,
    prefix: String,
    outgoing: mpsc::Sender<(String, Bytes)>,
    /// Bytes in `outgoing`.
    queued: Arc<AtomicUsize>,
    /// Connections the publishing client made.
    connections: Arc<AtomicU64>,
    subscriber: SubscriberClient,
    publisher: Client,
    /// Entries kept per stream, and for how long after the last one.
    history_size: u64,
    history_ttl: Duration,
}

impl RedisBroker {
    pub(super) fn start(
        settings: &BrokerSettings,
        node: &Arc<str>,
        topics: &Arc<Topics>,
    ) -> Result<RedisBroker, String> {
        let config = Config::from_url(&settings.url)
            .map_err(|e| format!("invalid configuration: `broker.url`: {e}"))?;
        let mut builder = Builder::from_config(config);
        builder.set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        builder.with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
            // Small messages (a relayed reply, an announcement) go at once,
            // not after the peer's delayed acknowledgement.
            c.tcp = fred::types::config::TcpConfig {
                nodelay: Some(true),
                ..Default::default()
            };
        });
        let publisher = builder.build().map_err(|e| format!("broker: {e}"))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| format!("broker: {e}"))?;
        let connections = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&connections);
        // Said once per connection, so an outage's end is in the log.
        // The listener runs on its own task; its handle is not needed.
        drop(publisher.on_reconnect(move |server| {
            let n = counted.fetch_add(1, Ordering::AcqRel) + 1;
            async move {
                if n > 1 {
                    tracing::info!(%server, "broker: connected to Redis again");
                }
                Ok(())
            }
        }));
        publisher.connect();
        subscriber.connect();
        // Resubscribes to every channel after a reconnect.
        subscriber.manage_subscriptions();
        let (outgoing, waiting) = mpsc::channel(OUTGOING);
        let queued = Arc::new(AtomicUsize::new(0));
        let prefix = format!("{}:", settings.prefix);
        tokio::spawn(send_queued(
            publisher.clone(),
            prefix.clone(),
            waiting,
            Arc::clone(&queued),
        ));
        tokio::spawn(receive(
            Arc::downgrade(topics),
            subscriber.message_rx(),
            prefix.clone(),
        ));
        tracing::info!(url = %tributary_datasource::redact_userinfo(&settings.url), node = %node, "broker: redis");
        Ok(RedisBroker {
            node: Arc::clone(node),
            topics: Arc::clone(topics),
            prefix,
            outgoing,
            queued,
            connections,
            subscriber,
            publisher,
            history_size: settings.history_size,
            history_ttl: settings.history_ttl,
        })
    }
}

#[async_trait]
impl Backend for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn has_other_nodes(&self) -> bool {
        true
    }

    fn is_up(&self) -> bool {
        self.publisher.is_connected() && self.subscriber.is_connected()
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    async fn subscribe(&self, topic: &str) {
        let channel = format!("{}{topic}", self.prefix);
        // While Redis is unreachable fred keeps the subscription and
        // sends it on connecting.
        if let Err(error) = self.subscriber.subscribe(channel).await {
            tracing::warn!(%error, topic, "broker: subscribing failed; it is retried on reconnect");
        }
    }

    fn publish(&self, topic: &str, payload: Bytes) -> bool {
        let size = payload.len();
        if self.queued.fetch_add(size, Ordering::AcqRel) + size > OUTGOING_BYTES {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        let sent = self.outgoing.try_send((topic.to_owned(), payload)).is_ok();
        if !sent {
            self.queued.fetch_sub(size, Ordering::AcqRel);
        }
        sent
    }

    async fn append(
        &self,
        stream: &str,
        payload: Bytes,
        retention: Retention,
    ) -> Result<Position, NotAppended> {
        if !self.is_up() {
            return Err(NotAppended {
                reason: "the broker (Redis) is unreachable".into(),
                maybe_kept: false,
            });
        }
        // The offset comes from a counter kept beside the stream; the epoch
        // is a key created with the first entry. Both live as long as the
        // stream (for good when it is kept whole), and vanish with it if
        // Redis restarts empty, so a fresh epoch (and offsets from 1) say
        // that the history was lost. Size and TTL 0: kept whole (until
        // trimmed by what nodes applied), each entry's id noted by offset
        // (KEYS[4]) so a trim finds where an offset is without reading entries.
        // An append that reaches Redis after its deadline (ARGV[5], ms
        // since the epoch) does nothing: its publisher was told it failed,
        // so a command the client library sends again once Redis is back
        // must not add it then.
        const SCRIPT: &str = "local now = redis.call('time') \
             if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[5]) then \
               return redis.error_reply('LATE the append reached Redis after its publisher stopped waiting') end \
             local epoch = redis.call('get', KEYS[2]) \
             local offset = redis.call('incr', KEYS[3]) \
             if (not epoch) or offset == 1 then \
               epoch = ARGV[1]; offset = 1; redis.call('set', KEYS[3], 1); redis.call('del', KEYS[4]) end \
             redis.call('set', KEYS[2], epoch) \
             if ARGV[2] == '0' then \
               local id = redis.call('xadd', KEYS[1], '*', 'o', offset, 'e', epoch, 'p', ARGV[4]) \
               redis.call('zadd', KEYS[4], offset, id) \
             else \
               redis.call('xadd', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'o', offset, 'e', epoch, 'p', ARGV[4]) \
             end \
             if ARGV[3] ~= '0' then \
               redis.call('expire', KEYS[1], ARGV[3]) \
               redis.call('expire', KEYS[2], ARGV[3]) \
               redis.call('expire', KEYS[3], ARGV[3]) end \
             return {offset, epoch}";
        let keys = stream_keys(&self.prefix, stream);
        let (size, ttl) = match retention {
            Retention::Whole => (0, 0),
            Retention::Recent => (self.history_size.max(1), self.history_ttl.as_secs().max(1)),
        };
        let args: Vec<fred::types::Value> = vec![
            new_node_id().to_string().into(),
            size.to_string().into(),
            ttl.to_string().into(),
            fred::types::Value::Bytes(payload),
            deadline_ms(APPEND_TIMEOUT).to_string().into(),
        ];
        // Sent once, never queued for a later connection: an append that
        // fails now is not applied when Redis comes back, after its
        // publisher was told it failed.
        let once = fred::types::config::Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(APPEND_TIMEOUT),
            ..Default::default()
        };
        let (offset, epoch): (u64, String) = self
            .publisher
            .with_options(&once)
            .eval(SCRIPT, keys, args)
            .await
            .map_err(|e| NotAppended {
                // Redis refusing the command kept nothing; a lost
                // connection or a late answer may come after it ran.
                maybe_kept: matches!(
                    e.kind(),
                    fred::error::ErrorKind::IO
                        | fred::error::ErrorKind::Canceled
                        | fred::error::ErrorKind::Timeout
                ),
                reason: format!("the broker (Redis) did not take it: {e}"),
            })?;
        // Readers wake on this rather than on a blocking XREAD, which the
        // client library answers late.
        self.publish(APPENDED, Bytes::copy_from_slice(stream.as_bytes()));
        Ok(Position { offset, epoch })
    }

    async fn trim(
        &self,
        stream: &str,
        through: &Position,
        kept_for: Duration,
    ) -> Result<u64, String> {
        if !self.is_up() {
            return Err("the broker (Redis) is unreachable".into());
        }
        // Removes the entries up to offset ARGV[1] of epoch ARGV[2] (found
        // by the ids noted at append, never reading entries) that were added
        // at least ARGV[3] ms ago (an id starts with the time it was added,
        // on Redis's clock): `XTRIM MINID` at whichever comes first (whole
        // blocks of entries are freed at once, so even an hour's worth is
        // quick). Within an epoch entries are in offset order.
        const SCRIPT: &str = "if redis.call('get', KEYS[2]) ~= ARGV[2] then return 0 end \
             local at = redis.call('zrangebyscore', KEYS[3], ARGV[1], ARGV[1]) \
             if #at == 0 then return 0 end \
             local ms, seq = string.match(at[1], '^(%d+)-(%d+)$') \
             local now = redis.call('time') \
             local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3]) \
             local minid = ms .. '-' .. (tonumber(seq) + 1) \
             if tonumber(ms) >= cutoff then minid = string.format('%d-0', cutoff) end \
             local removed = redis.call('xtrim', KEYS[1], 'MINID', minid) \
             local first = redis.call('xrange', KEYS[1], '-', '+', 'COUNT', 1) \
             local kept_from = tonumber(ARGV[1]) + 1 \
             if #first > 0 then \
               local fields = first[1][2] \
               for j = 1, #fields, 2 do \
                 if fields[j] == 'o' then kept_from = math.min(kept_from, tonumber(fields[j + 1])) end \
               end \
             end \
             redis.call('zremrangebyscore', KEYS[3], '-inf', '(' .. kept_from) \
             return removed";
        let keys = stream_keys(&self.prefix, stream);
        let args: Vec<fred::types::Value> = vec![
            through.offset.to_string().into(),
            through.epoch.clone().into(),
            kept_for.as_millis().to_string().into(),
        ];
        self.publisher
            .eval(
                SCRIPT,
                vec![keys[0].clone(), keys[1].clone(), keys[3].clone()],
                args,
            )
            .await
            .map_err(|e| format!("the broker (Redis): {e}"))
    }

    async fn first_position(&self, stream: &str) -> Result<Option<Position>, String> {
        if !self.is_up() {
            return Err("the broker (Redis) is unreachable".into());
        }
        let keys = stream_keys(&self.prefix, stream);
        // The first readable of the oldest few (an unreadable entry is
        // skipped by readers too).
        let entries: Vec<(String, HashMap<String, String>)> = self
            .publisher
            .xrange(keys[0].clone(), "-", "+", Some(16))
            .await
            .map_err(|e| format!("the broker (Redis): {e}"))?;
        if entries.is_empty() {
            return Ok(None);
        }
        entries
            .into_iter()
            .find_map(|(_, fields)| {
                Some(Position {
                    offset: fields.get("o")?.parse().ok()?,
                    epoch: fields.get("e")?.clone(),
                })
            })
            .map(Some)
            .ok_or_else(|| "the oldest entries of the stream are unreadable".into())
    }

    async fn last_position(&self, stream: &str) -> Result<Option<Position>, String> {
        if !self.is_up() {
            return Err("the broker (Redis) is unreachable".into());
        }
        let keys = stream_keys(&self.prefix, stream);
        let (epoch, offset): (Option<String>, Option<u64>) = self
            .publisher
            .mget(vec![keys[1].clone(), keys[2].clone()])
            .await
            .map_err(|e| format!("the broker (Redis): {e}"))?;
        Ok(epoch
            .zip(offset)
            .map(|(epoch, offset)| Position { offset, epoch }))
    }

    fn follow(
        &self,
        streams: Vec<String>,
        added: mpsc::UnboundedReceiver<String>,
        sender: mpsc::Sender<StreamEntry>,
    ) {
        let prefix = format!("{}stream:", self.prefix);
        let woken = self.topics.sender(APPENDED).subscribe();
        let (subscriber, channel) = (
            self.subscriber.clone(),
            format!("{}{APPENDED}", self.prefix),
        );
        let reader = self.publisher.clone();
        tokio::spawn(async move {
            if let Err(error) = subscriber.subscribe(channel).await {
                tracing::warn!(%error, "broker: subscribing failed; it is retried on reconnect");
            }
            read_streams(reader, woken, prefix, streams, added, sender).await;
        });
    }

    async fn set_field(&self, hash: &str, field: &str, value: &str) -> Result<(), String> {
        let key = format!("{}{hash}", self.prefix);
        let _: i64 = self
            .publisher
            .hset(key, (field, value))
            .await
            .map_err(|e| format!("the broker (Redis): {e}"))?;
        Ok(())
    }

    async fn fields(&self, hash: &str) -> Result<HashMap<String, String>, String> {
        let key = format!("{}{hash}", self.prefix);
        self.publisher
            .hgetall(key)
            .await
            .map_err(|e| format!("the broker (Redis): {e}"))
    }

    async fn remove_fields(&self, hash: &str, fields: Vec<String>) {
        let key = format!("{}{hash}", self.prefix);
        let _: Result<i64, _> = self.publisher.hdel(key, fields).await;
    }

    async fn try_lease(&self, name: &str, ttl: Duration) -> bool {
        // Renew if ours, else take if free: one atomic step.
        const SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
             return redis.call('pexpire', KEYS[1], ARGV[2]) \
             elseif redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 \
             else return 0 end";
        let key = format!("{}lease:{name}", self.prefix);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let held: Result<i64, _> = self
            .publisher
            .eval(
                SCRIPT,
                vec![key],
                vec![self.node.to_string(), ttl_ms.to_string()],
            )
            .await;
        matches!(held, Ok(1))
    }

    async fn release_lease(&self, name: &str) {
        const SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
             return redis.call('del', KEYS[1]) else return 0 end";
        let key = format!("{}lease:{name}", self.prefix);
        let _: Result<i64, _> = self
            .publisher
            .eval(SCRIPT, vec![key], vec![self.node.to_string()])
            .await;
    }
}

/// Milliseconds since the Unix epoch, `after` from now.
fn deadline_ms(after: Duration) -> u128 {
    (std::time::SystemTime::now() + after)
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A stream's keys: its entries, its epoch, its last offset.
fn stream_keys(prefix: &str, stream: &str) -> Vec<String> {
    let base = format!("{prefix}stream:{stream}");
    vec![
        base.clone(),
        format!("{base}:epoch"),
        format!("{base}:offset"),
        format!("{base}:ids"),
    ]
}

async fn send_queued(
    publisher: Client,
    prefix: String,
    mut waiting: mpsc::Receiver<(String, Bytes)>,
    queued: Arc<AtomicUsize>,
) {
    while let Some((topic, payload)) = waiting.recv().await {
        queued.fetch_sub(payload.len(), Ordering::AcqRel);
        let channel = format!("{prefix}{topic}");
        let sent: Result<i64, _> = publisher.publish(channel, payload).await;
        if let Err(error) = sent {
            tracing::warn!(%error, topic, "broker: a message could not be published");
        }
    }
}

async fn receive(
    topics: std::sync::Weak<Topics>,
    mut messages: broadcast::Receiver<fred::types::Message>,
    prefix: String,
) {
    loop {
        let message = match messages.recv().await {
            Ok(message) => message,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "broker: this node fell behind Redis; messages were missed"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(topics) = topics.upgrade() else {
            return;
        };
        let Some(topic) = message.channel.strip_prefix(prefix.as_str()) else {
            continue;
        };
        if let Some(payload) = message.value.as_bytes() {
            topics.deliver(topic, Bytes::copy_from_slice(payload));
        }
    }
}

/// Topic on which every append is announced (payload: the stream's name).
const APPENDED: &str = "appended";

/// Reads `streams` whenever an append is announced, and every second (to
/// catch up after a reconnect, when announcements may have been missed).
/// Entries are read by Redis id, which keeps growing across a Redis restart
/// (unlike offsets, which start again in a new epoch).
async fn read_streams(
    reader: Client,
    mut woken: broadcast::Receiver<Bytes>,
    prefix: String,
    mut streams: Vec<String>,
    mut added: mpsc::UnboundedReceiver<String>,
    sender: mpsc::Sender<StreamEntry>,
) {
    // From the start: a node that starts replays the history.
    let mut last: Vec<String> = streams.iter().map(|_| "0".to_owned()).collect();
    let mut backoff = Duration::from_millis(100);
    let mut more = true;
    loop {
        if sender.is_closed() {
            return;
        }
        if !more || streams.is_empty() {
            tokio::select! {
                woke = woken.recv() => {
                    if matches!(woke, Err(broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
                stream = added.recv() => {
                    if let Some(stream) = stream {
                        if !streams.contains(&stream) {
                            streams.push(stream);
                            last.push("0".to_owned());
                        }
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        while let Ok(stream) = added.try_recv() {
            if !streams.contains(&stream) {
                streams.push(stream);
                last.push("0".to_owned());
            }
        }
        if streams.is_empty() {
            continue;
        }
        let keys: Vec<String> = streams.iter().map(|s| format!("{prefix}{s}")).collect();
        // Nothing new is `nil`, which is not a map: read the value first.
        let read: Result<fred::types::streams::XReadResponse<String, String, String, Bytes>, _> =
            match reader
                .xread::<fred::types::Value, _, _>(Some(256), None, keys.clone(), last.clone())
                .await
            {
                Ok(value) if value.is_null() => Ok(Default::default()),
                Ok(value) => value.into_xread_response(),
                Err(error) => Err(error),
            };
        let read = match read {
            Ok(read) => {
                backoff = Duration::from_millis(100);
                read
            }
            Err(error) => {
                tracing::warn!(%error, "broker: reading streams failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                more = true;
                continue;
            }
        };
        // A full read may have left more behind: read again at once.
        more = read.values().any(|entries| entries.len() >= 256);
        for (i, key) in keys.iter().enumerate() {
            let Some(entries) = read.get(key) else {
                continue;
            };
            for (id, mut fields) in entries.iter().cloned() {
                last[i] = id.clone();
                let position = fields
                    .remove("o")
                    .and_then(|o| std::str::from_utf8(&o).ok()?.parse::<u64>().ok())
                    .zip(
                        fields
                            .remove("e")
                            .and_then(|e| String::from_utf8(e.to_vec()).ok()),
                    );
                let (Some((offset, epoch)), Some(payload)) = (position, fields.remove("p")) else {
                    tracing::warn!(stream = %streams[i], %id, "broker: an entry without offset, epoch or payload");
                    continue;
                };
                let entry = StreamEntry {
                    stream: streams[i].clone(),
                    position: Position { offset, epoch },
                    payload,
                };
                if sender.send(entry).await.is_err() {
                    return;
                }
            }
        }
    }
}
