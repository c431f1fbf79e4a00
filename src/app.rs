//! The composition root: builds, from the settings, everything the server
//! shares — metrics, the datasources and their federation, the request rules,
//! the pool of cores for searches, auth, the board of datasource health —
//! once: also the live hub of channels and the live queries. Connections
//! get an `Arc<App>`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::auth::Auth;
use crate::config::PublishSettings;
use crate::config::{Limits, Settings};
use crate::cores::CorePool;
use crate::datasources::Registry;
use crate::federation::{Federation, Source};
use crate::live::publishing::Publishing;
use crate::live::{HealthBoard, Hub, LiveQueries};
use crate::metrics::Metrics;
use crate::protocol::DatasourceInfo;
use crate::request::RequestRules;

pub struct App {
    pub metrics: Arc<Metrics>,
    /// Records published to datasources (HTTP and services alike).
    pub publishing: Arc<Publishing>,
    pub federation: Arc<Federation>,
    pub rules: RequestRules,
    /// Fields of different datasources holding the same kind of value.
    pub links: Arc<crate::expand::Links>,
    pub limits: Limits,
    pub auth: Auth,
    /// CPU-bound searches running at once, over all connections: one per
    /// core, shared fairly between connections.
    pub cores: Arc<CorePool>,
    /// Websocket connections held now (counted until their socket is gone).
    pub connections: Arc<AtomicUsize>,
    /// Flips to `Some(drain)` when the server is shutting down.
    pub shutdown: watch::Receiver<Option<Duration>>,
    /// Where the other nodes reach this one (peer recovery).
    pub advertise_url: String,
    /// Whether the broker's streams of records kept are trimmed of what
    /// every node has applied (`broker.records_retention = "applied"`), and
    /// how long entries are kept at least (`broker.records_kept_for`).
    pub trim_applied: Option<Duration>,
    /// Each datasource's last measured health (`live::monitor` keeps it).
    pub health: Arc<HealthBoard>,
    /// Live channels and their subscribers.
    pub hub: Arc<Hub>,
    /// Live queries and their subscribers.
    pub live: Arc<LiveQueries>,
    /// Who may publish records, and how much at once.
    pub publish: PublishSettings,
    /// How the nodes of a cluster reach each other (`memory`: one node).
    pub broker: Arc<crate::live::Broker>,
    /// What this node has applied of the streams of published records and
    /// health measures.
    pub streams: Arc<crate::live::streams::Streams>,
    /// The services identified on `/ws/services`.
    pub services: Arc<crate::services::Services>,
    /// How often `live::monitor` measures.
    pub health_interval: Duration,
    pub started: Instant,
}

/// Tells every connection the server is shutting down.
pub type ShutdownSender = watch::Sender<Option<Duration>>;

/// A task the server runs beside its connections, from start to shutdown.
pub type BackgroundTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

impl App {
    /// Builds every configured datasource (the first that fails stops
    /// start-up) and the rest of the server; `addr` is the address it is bound to.
    pub fn build(
        settings: &Settings,
        registry: &Registry,
        addr: SocketAddr,
    ) -> Result<(App, ShutdownSender), String> {
        let metrics = Arc::new(Metrics::new());
        let mut sources = Vec::with_capacity(settings.datasources.len());
        for ds in &settings.datasources {
            let mut ds = ds.clone();
            if ds.data_dir.is_none() {
                ds.data_dir = settings.data_dir_of(&ds.id);
            }
            let datasource = registry.build(&ds).map_err(|e| e.to_string())?;
            sources.push(Source {
                info: DatasourceInfo {
                    id: ds.id.clone(),
                    name: ds.name.clone(),
                    kind: ds.kind.clone(),
                },
                datasource,
                timeout: ds.timeout.unwrap_or(settings.default_timeout),
            });
            tracing::info!(datasource = %ds.id, kind = %ds.kind, "datasource ready");
        }
        release_freed_memory();
        let federation =
            Federation::new(sources, settings.results.batch_size, Arc::clone(&metrics));
        let cores = match settings.limits.search_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let (shutdown_sender, shutdown) = watch::channel(None);
        let hub = Arc::new(Hub::new(Arc::clone(&metrics)));
        let federation = Arc::new(federation);
        let streams = Arc::new(crate::live::streams::Streams::default());
        let broker = crate::live::Broker::from_settings(&settings.broker)?;
        let publishing = Arc::new(Publishing::new(
            Arc::clone(&broker),
            Arc::clone(&streams),
            Arc::clone(&metrics),
        ));
        publishing.resume(&federation.sources());
        let live = Arc::new(LiveQueries::new(
            Arc::clone(&federation),
            Arc::clone(&streams),
            Arc::clone(&broker),
            Arc::clone(&metrics),
            settings.results.batch_size,
        ));
        let services = Arc::new(crate::services::Services::new(
            &settings.services,
            Arc::clone(&federation),
            Arc::clone(&broker),
            Arc::clone(&publishing),
            settings.default_timeout,
            &settings.limits,
            Arc::clone(&metrics),
        ));
        let app = App {
            publishing,
            metrics,
            broker,
            streams,
            services,
            federation,
            live,
            publish: settings.publish.clone(),
            rules: RequestRules::from_settings(settings),
            links: Arc::new(crate::expand::Links::new(&settings.links)),
            limits: settings.limits.clone(),
            auth: Auth::new(&settings.auth, addr)?,
            cores: CorePool::new(cores),
            connections: Arc::new(AtomicUsize::new(0)),
            shutdown,
            health: Arc::new(HealthBoard::default()),
            hub,
            health_interval: settings.live.health_interval,
            advertise_url: crate::live::recovery::advertised(
                settings.broker.advertise_url.as_deref(),
                addr,
            ),
            trim_applied: (settings.broker.records_retention
                == crate::config::RecordsRetention::Applied)
                .then_some(settings.broker.records_kept_for),
            started: Instant::now(),
        };
        Ok((app, shutdown_sender))
    }

    /// The tasks that run beside the connections: applying the streams
    /// (reading starts here, before anything is appended to them), polling
    /// for the cluster, measuring health, and remote datasources across
    /// nodes. The server spawns them once, on its runtime.
    pub fn background_tasks(&self) -> Vec<BackgroundTask> {
        let (follower, entries) = self
            .broker
            .follow(crate::live::streams::streams_of(&self.federation));
        let appliers = crate::live::streams::Appliers {
            federation: Arc::clone(&self.federation),
            hub: Arc::clone(&self.hub),
            board: Arc::clone(&self.health),
            streams: Arc::clone(&self.streams),
            live: Arc::clone(&self.live),
            metrics: Arc::clone(&self.metrics),
            broker: Arc::clone(&self.broker),
        };
        vec![
            Box::pin(crate::live::polls::run(
                Arc::clone(&self.federation),
                Arc::clone(&self.broker),
                Arc::clone(&self.metrics),
                self.shutdown.clone(),
            )),
            Box::pin(crate::live::streams::run(appliers, follower, entries)),
            Box::pin(crate::live::streams::measure(
                Arc::clone(&self.federation),
                Arc::clone(&self.broker),
                Arc::clone(&self.streams),
                self.shutdown.clone(),
            )),
            Box::pin(crate::live::recovery::run(
                Arc::clone(&self.federation),
                Arc::clone(&self.broker),
                Arc::clone(&self.streams),
                self.advertise_url.clone(),
                self.trim_applied,
                self.shutdown.clone(),
            )),
            Box::pin(crate::live::streams::watch_lag(
                Arc::clone(&self.federation),
                Arc::clone(&self.broker),
                Arc::clone(&self.metrics),
                self.shutdown.clone(),
            )),
            Box::pin(crate::live::monitor(
                Arc::clone(&self.federation),
                Arc::clone(&self.broker),
                Arc::clone(&self.metrics),
                self.health_interval,
                self.shutdown.clone(),
            )),
            Box::pin(crate::services::cluster::run(Arc::clone(&self.services))),
        ]
    }
}

/// Gives the memory freed while building the datasources (an index's
/// temporary buffers) back to the system now, instead of at the allocator's
/// next busy moment: the resident size after start-up is the server's own.
fn release_freed_memory() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: `mi_collect` takes no pointers; it only returns this thread's
    // free pages to the system, whichever allocator is the global one.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_example_config_builds() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tributary.example.toml");
        let settings = crate::config::load(Some(&file), None).unwrap();
        let registry = Registry::with_builtin();
        let addr = "127.0.0.1:8080".parse().unwrap();
        let (app, _) = App::build(&settings, &registry, addr).unwrap();
        assert_eq!(app.federation.sources().len(), 2);
    }
}
