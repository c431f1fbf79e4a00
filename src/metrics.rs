//! Prometheus metrics, served at `/metrics`. Each server owns its own
//! registry (so several servers in one process, as in tests, never mix).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Websocket connections open now.
    pub connections_open: IntGauge,
    /// Websocket connections accepted since start.
    pub connections_total: IntCounter,
    /// Requests running now, over all connections.
    pub requests_running: IntGauge,
    /// Inbound messages by `type` and `outcome`.
    pub requests: IntCounterVec,
    /// Time each datasource took to answer, by datasource, call and outcome.
    pub datasource_seconds: HistogramVec,
    /// Time datasources spent waiting for room in a client's outbox (a slow
    /// reader), by datasource; not counted in `datasource_seconds`.
    pub outbox_wait_seconds: HistogramVec,
    /// Bytes queued for clients now, over all connections.
    pub outbox_bytes: IntGauge,
    /// Messages and bytes written to clients.
    pub messages_out: IntCounter,
    pub bytes_out: IntCounter,
    /// Upgrades refused before the websocket opened, by reason.
    pub rejected_upgrades: IntCounterVec,
    /// Connections closed because the client did not read its messages.
    pub slow_client_disconnects: IntCounter,
    pub connection_resets: IntCounter,
    /// Connections the server closed, by close code.
    pub closes: IntCounterVec,
    /// Channel subscriptions now, over all connections.
    pub live_subscriptions: IntGauge,
    /// Values published on channels.
    pub live_publishes: IntCounter,
    /// Values queued for subscribers.
    pub live_deliveries: IntCounter,
    /// Messages queued for services on `/ws/services` (events, replies, answers).
    pub service_messages: IntCounter,
    /// Subscribers closed (4420) because their outbox was full.
    pub live_dropped_subscribers: IntCounter,
    /// Live requests followed now, one per datasource.
    pub live_queries: IntGauge,
    /// Distinct live queries (query and cursor) now: what each new record is matched against.
    pub live_query_groups: IntGauge,
    /// Distinct live queries asked for new records.
    pub live_matches: IntCounter,
    /// Records published to datasources.
    pub published_records: IntCounterVec,
    /// Replies of services to a remote datasource's requests, by datasource
    /// and outcome (`taken`, `late`: after the request ended, `overflow`).
    pub remote_replies: IntCounterVec,
    /// 1 while the broker can deliver (always with `memory`).
    pub broker_up: IntGauge,
    /// Datasource health checks this node ran (with several nodes, only the
    /// holder of the `health` lease runs them).
    pub health_checks: IntCounter,
    /// Polls this node ran for the whole cluster (as holder of the
    /// datasource's `poll:` lease), by datasource.
    pub cluster_polls: IntCounterVec,
    /// Work refused, or connections closed, because a limit was reached,
    /// by the limit's name (`publish.body_timeout`, `services.awaiting`, …).
    pub limit_refusals: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("tributary".into()), None)
            .unwrap_or_else(|_| Registry::new());
        let metrics = Metrics {
            connections_open: IntGauge::new("connections_open", "Websocket connections open now")
                .expect("valid metric"),
            connections_total: IntCounter::new(
                "connections_total",
                "Websocket connections accepted since start",
            )
            .expect("valid metric"),
            requests_running: IntGauge::new(
                "requests_running",
                "Requests running now over all connections",
            )
            .expect("valid metric"),
            requests: IntCounterVec::new(
                Opts::new("requests_total", "Inbound messages by type and outcome"),
                &["type", "outcome"],
            )
            .expect("valid metric"),
            datasource_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "datasource_duration_seconds",
                    "Time a datasource took to answer one call",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
                &["datasource", "call", "outcome"],
            )
            .expect("valid metric"),
            outbox_wait_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "outbox_wait_seconds",
                    "Time a datasource's results waited for room in a slow client's outbox",
                )
                .buckets(vec![0.001, 0.01, 0.1, 1.0, 10.0, 60.0]),
                &["datasource"],
            )
            .expect("valid metric"),
            outbox_bytes: IntGauge::new(
                "outbox_bytes",
                "Bytes queued for clients now, over all connections",
            )
            .expect("valid metric"),
            messages_out: IntCounter::new("messages_out_total", "Messages written to clients")
                .expect("valid metric"),
            bytes_out: IntCounter::new("bytes_out_total", "Bytes of messages written to clients")
                .expect("valid metric"),
            rejected_upgrades: IntCounterVec::new(
                Opts::new(
                    "rejected_upgrades_total",
                    "Websocket upgrades refused, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            slow_client_disconnects: IntCounter::new(
                "slow_client_disconnects_total",
                "Connections closed because the client did not read",
            )
            .expect("valid metric"),
            connection_resets: IntCounter::new(
                "connection_resets_total",
                "Connections reset because their close was not delivered within limits.close_timeout",
            )
            .expect("valid metric"),
            closes: IntCounterVec::new(
                Opts::new(
                    "closes_total",
                    "Connections the server closed, by close code",
                ),
                &["code"],
            )
            .expect("valid metric"),
            live_subscriptions: IntGauge::new(
                "live_subscriptions",
                "Channel subscriptions now, over all connections",
            )
            .expect("valid metric"),
            live_publishes: IntCounter::new("live_publishes_total", "Values published on channels")
                .expect("valid metric"),
            live_deliveries: IntCounter::new(
                "live_deliveries_total",
                "Channel values and live appends queued for subscribers",
            )
            .expect("valid metric"),
            service_messages: IntCounter::new(
                "service_messages_total",
                "Messages queued for services on /ws/services (events, replies, answers)",
            )
            .expect("valid metric"),
            live_dropped_subscribers: IntCounter::new(
                "live_dropped_subscribers_total",
                "Channel, live query and service subscribers closed (4420) because they did not read",
            )
            .expect("valid metric"),
            live_queries: IntGauge::new(
                "live_queries",
                "Live requests followed now, one per datasource",
            )
            .expect("valid metric"),
            live_query_groups: IntGauge::new(
                "live_query_groups",
                "Distinct live queries now: what each new record is matched against",
            )
            .expect("valid metric"),
            live_matches: IntCounter::new(
                "live_matches_total",
                "Distinct live queries asked for new records",
            )
            .expect("valid metric"),
            published_records: IntCounterVec::new(
                Opts::new("published_records_total", "Records published, by datasource"),
                &["datasource"],
            )
            .expect("valid metric"),
            cluster_polls: IntCounterVec::new(
                Opts::new(
                    "cluster_polls_total",
                    "Polls of a datasource this node ran for every node's live queries",
                ),
                &["datasource"],
            )
            .expect("valid metric"),
            remote_replies: IntCounterVec::new(
                Opts::new(
                    "remote_replies_total",
                    "Replies of services to remote datasource requests, by datasource and outcome",
                ),
                &["datasource", "outcome"],
            )
            .expect("valid metric"),
            broker_up: IntGauge::new("broker_up", "1 while the broker can deliver")
                .expect("valid metric"),
            health_checks: IntCounter::new(
                "health_checks_total",
                "Datasource health checks this node ran",
            )
            .expect("valid metric"),
            limit_refusals: IntCounterVec::new(
                Opts::new(
                    "limit_refusals_total",
                    "Work refused or connections closed because a limit was reached, by limit",
                ),
                &["limit"],
            )
            .expect("valid metric"),
            registry,
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 27] = [
            Box::new(self.limit_refusals.clone()),
            Box::new(self.live_queries.clone()),
            Box::new(self.live_query_groups.clone()),
            Box::new(self.live_matches.clone()),
            Box::new(self.published_records.clone()),
            Box::new(self.remote_replies.clone()),
            Box::new(self.cluster_polls.clone()),
            Box::new(self.broker_up.clone()),
            Box::new(self.health_checks.clone()),
            Box::new(self.live_subscriptions.clone()),
            Box::new(self.live_publishes.clone()),
            Box::new(self.live_deliveries.clone()),
            Box::new(self.service_messages.clone()),
            Box::new(self.live_dropped_subscribers.clone()),
            Box::new(self.outbox_wait_seconds.clone()),
            Box::new(self.outbox_bytes.clone()),
            Box::new(self.connections_open.clone()),
            Box::new(self.connections_total.clone()),
            Box::new(self.requests_running.clone()),
            Box::new(self.requests.clone()),
            Box::new(self.datasource_seconds.clone()),
            Box::new(self.messages_out.clone()),
            Box::new(self.bytes_out.clone()),
            Box::new(self.rejected_upgrades.clone()),
            Box::new(self.slow_client_disconnects.clone()),
            Box::new(self.connection_resets.clone()),
            Box::new(self.closes.clone()),
        ];
        for collector in collectors {
            // Names are distinct constants above, so registration cannot clash.
            let _ = self.registry.register(collector);
        }
    }

    /// Counts one inbound message.
    pub fn request(&self, kind: &str, outcome: &str) {
        self.requests.with_label_values(&[kind, outcome]).inc();
    }

    /// Counts one refusal by the limit `limit`.
    pub fn refused(&self, limit: &str) {
        self.limit_refusals.with_label_values(&[limit]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
