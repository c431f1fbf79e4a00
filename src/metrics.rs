//! Prometheus metrics, served at `/metrics`. Each server owns its own
//! registry (so several servers in one process, as in tests, never mix).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
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
    /// Publishes (batches), by datasource and outcome: `accepted`, or why
    /// refused (`invalid`, `full`, `not_supported`, `unavailable`, `broker`).
    pub publishes: IntCounterVec,
    /// Replies of services to a remote datasource's requests, by datasource
    /// and outcome (`taken`, `late`: after the request ended, `overflow`).
    pub remote_replies: IntCounterVec,
    pub remote_results_past_size: IntCounterVec,
    pub remote_replies_without_total: IntCounterVec,
    /// 1 while the broker can deliver (always with `memory`).
    pub broker_up: IntGauge,
    /// Connections made to the broker (the first, then each reconnection).
    pub broker_connections: IntCounter,
    /// The last publication of records this node applied, by datasource.
    pub applied_offset: IntGaugeVec,
    /// Times a datasource's stream of records started a new history (the
    /// broker lost the old one), by datasource.
    pub epoch_changes: IntCounterVec,
    /// 0 while this node is not ready (catching up, or missing records).
    pub ready: IntGauge,
    /// Publications this node still has to apply before it is ready, by datasource.
    pub catch_up_remaining: IntGaugeVec,
    /// Publications in the broker's stream this node has not applied, by
    /// datasource (measured every 5 s with several nodes).
    pub stream_lag: IntGaugeVec,
    /// 1, labelled with the version running.
    pub build_info: IntGaugeVec,
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
        let add = Adder(&registry);
        let metrics = Metrics {
            connections_open: add.gauge("connections_open", "Websocket connections open now"),
            connections_total: add.counter("connections_total", "Websocket connections accepted since start"),
            requests_running: add.gauge("requests_running", "Requests running now over all connections"),
            requests: add.counters("requests_total", "Inbound messages by type and outcome", &["type", "outcome"]),
            datasource_seconds: add.histograms(
                "datasource_duration_seconds",
                "Time a datasource took to answer one call",
                &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
                &["datasource", "call", "outcome"],
            ),
            outbox_wait_seconds: add.histograms(
                "outbox_wait_seconds",
                "Time a datasource's results waited for room in a slow client's outbox",
                &[0.001, 0.01, 0.1, 1.0, 10.0, 60.0],
                &["datasource"],
            ),
            outbox_bytes: add.gauge("outbox_bytes", "Bytes queued for clients now, over all connections"),
            messages_out: add.counter("messages_out_total", "Messages written to clients"),
            bytes_out: add.counter("bytes_out_total", "Bytes of messages written to clients"),
            rejected_upgrades: add.counters("rejected_upgrades_total", "Websocket upgrades refused, by reason", &["reason"]),
            slow_client_disconnects: add.counter("slow_client_disconnects_total", "Connections closed because the client did not read"),
            connection_resets: add.counter("connection_resets_total", "Connections reset because their close was not delivered within limits.close_timeout"),
            closes: add.counters("closes_total", "Connections the server closed, by close code", &["code"]),
            live_subscriptions: add.gauge("live_subscriptions", "Channel subscriptions now, over all connections"),
            live_publishes: add.counter("live_publishes_total", "Values published on channels"),
            live_deliveries: add.counter("live_deliveries_total", "Channel values and live appends queued for subscribers"),
            service_messages: add.counter("service_messages_total", "Messages queued for services on /ws/services (events, replies, answers)"),
            live_dropped_subscribers: add.counter("live_dropped_subscribers_total", "Channel, live query and service subscribers closed (4420) because they did not read"),
            live_queries: add.gauge("live_queries", "Live requests followed now, one per datasource"),
            live_query_groups: add.gauge("live_query_groups", "Distinct live queries now: what each new record is matched against"),
            live_matches: add.counter("live_matches_total", "Distinct live queries asked for new records"),
            published_records: add.counters("published_records_total", "Records published, by datasource", &["datasource"]),
            publishes: add.counters("publishes_total", "Published batches, by datasource and outcome (accepted, or the reason refused)", &["datasource", "outcome"]),
            cluster_polls: add.counters("cluster_polls_total", "Polls of a datasource this node ran for every node's live queries", &["datasource"]),
            remote_replies: add.counters("remote_replies_total", "Replies of services to remote datasource requests, by datasource and outcome", &["datasource", "outcome"]),
            remote_results_past_size: add.counters("remote_results_past_size_total", "Results services sent past the size a search asked for (dropped), by datasource", &["datasource"]),
            remote_replies_without_total: add.counters("remote_replies_without_total_total", "SEARCH replies of services that carried no total, by datasource", &["datasource"]),
            broker_up: add.gauge("broker_up", "1 while the broker can deliver"),
            broker_connections: add.counter("broker_connections_total", "Connections made to the broker: the first, then each reconnection"),
            applied_offset: add.gauges("applied_offset", "The offset of the last publication of records this node applied, by datasource", &["datasource"]),
            epoch_changes: add.counters("epoch_changes_total", "Times a datasource's published records started a new history because the broker lost the old one", &["datasource"]),
            ready: add.gauge("ready", "1 while this node holds every published record the others hold and can serve searches"),
            catch_up_remaining: add.gauges("catch_up_remaining", "Publications this node still has to apply before it is ready, by datasource", &["datasource"]),
            stream_lag: add.gauges("stream_lag", "Publications of records in the broker's stream this node has not applied yet, by datasource (measured every 5 s with several nodes)", &["datasource"]),
            build_info: add.gauges("build_info", "1, labelled with the version running", &["version"]),
            health_checks: add.counter("health_checks_total", "Datasource health checks this node ran"),
            limit_refusals: add.counters("limit_refusals_total", "Work refused or connections closed because a limit was reached, by limit", &["limit"]),
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // The process's own CPU, memory, open files and threads (Linux).
        let _ = metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        metrics
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

/// Makes each metric and registers it at once, so none is left out.
struct Adder<'a>(&'a Registry);

impl Adder<'_> {
    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, metric: C) -> C {
        // Names are distinct constants, so registration cannot clash.
        let _ = self.0.register(Box::new(metric.clone()));
        metric
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("a valid metric"))
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric"))
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("a valid metric"))
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric"))
    }

    fn histograms(&self, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
        let options = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(HistogramVec::new(options, labels).expect("a valid metric"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_under_the_prefix() {
        let metrics = Metrics::new();
        // Labelled families appear once a label set is used.
        metrics.request("PING", "ok");
        metrics.refused("publish.body_timeout");
        for family in [
            &metrics.published_records,
            &metrics.cluster_polls,
            &metrics.epoch_changes,
            &metrics.rejected_upgrades,
            &metrics.closes,
        ] {
            family.with_label_values(&["x"]).inc();
        }
        for family in [&metrics.remote_replies, &metrics.publishes] {
            family.with_label_values(&["x", "taken"]).inc();
        }
        metrics
            .datasource_seconds
            .with_label_values(&["x", "search", "ok"])
            .observe(0.1);
        metrics
            .outbox_wait_seconds
            .with_label_values(&["x"])
            .observe(0.1);
        metrics.applied_offset.with_label_values(&["x"]).set(1);
        metrics.catch_up_remaining.with_label_values(&["x"]).set(1);
        metrics.stream_lag.with_label_values(&["x"]).set(1);
        let families = metrics.registry.gather();
        let (process, own): (Vec<_>, Vec<_>) = families
            .iter()
            .partition(|f| f.name().starts_with("tributary_process_"));
        assert_eq!(own.len(), 35, "every field of Metrics, registered once");
        let names: Vec<&str> = process.iter().map(|f| f.name()).collect();
        for name in [
            "tributary_process_cpu_seconds_total",
            "tributary_process_resident_memory_bytes",
            "tributary_process_open_fds",
        ] {
            assert!(names.contains(&name), "{names:?}");
        }
        assert!(families.iter().all(|f| f.name().starts_with("tributary_")));
        assert!(metrics
            .render()
            .contains("tributary_datasource_duration_seconds_bucket"));
    }
}
