//! Settings: a TOML file (optional), overridden by `TRIBUTARY_*` environment
//! variables (nested keys joined by `__`, e.g. `TRIBUTARY_LIMITS__MAX_REQUESTS=4`),
//! overridden by command-line flags. See `tributary.example.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::datasources::DatasourceSettings;
use crate::datasources::{parse_duration, QueryLimits};
use crate::protocol::LinkRewrite;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Address the HTTP server binds, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// A folder to serve the web UI from; `None`: the copy built into the binary.
    pub static_dir: Option<PathBuf>,
    /// Datasources in id order.
    pub datasources: Vec<DatasourceSettings>,
    /// Timeout for datasources that do not set their own.
    pub default_timeout: Duration,
    pub results: ResultSettings,
    pub limits: Limits,
    pub auth: AuthSettings,
    pub live: LiveSettings,
    pub publish: PublishSettings,
    /// Services that may identify on `/ws/services`, by name.
    pub services: BTreeMap<String, ServiceSettings>,
    pub broker: BrokerSettings,
    /// Fields of different datasources that hold the same kind of value,
    /// by link name (`[links.person]`).
    pub links: BTreeMap<String, LinkSettings>,
    /// Where published records are kept, a folder per datasource (`data_dir`;
    /// by default `data` beside the config file, or in the working
    /// directory without one). `None`: nothing is kept (tests).
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// Whether this server may take published records (publishing is open,
    /// a token may publish, or other nodes publish through the broker):
    /// only then are datasources given a folder of `data_dir`.
    pub fn takes_records(&self) -> bool {
        self.publish.enabled
            || self.auth.tokens.values().any(|t| t.publish)
            || self.broker.kind == BrokerKind::Redis
    }

    /// The folder of `data_dir` for datasource `id`, when records are kept.
    pub fn data_dir_of(&self, id: &str) -> Option<PathBuf> {
        let root = self.data_dir.as_ref().filter(|_| self.takes_records())?;
        // Any id is a folder name of its own: nothing but letters, digits,
        // `-`, `_` and `.` (never `.` or `..` alone).
        let mut name: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if name.chars().all(|c| c == '.') {
            name = name.replace('.', "_");
        }
        Some(root.join(name))
    }
}

/// `[links.<name>]`: fields that hold the same kind of value in different
/// datasources, so an expansion from a value of one follows it into the
/// others (`"tweets:user.screen_name"`, `"emails:from"`…).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkSettings {
    /// `datasource:field` each.
    pub fields: Vec<String>,
    /// Values are compared lowercased.
    #[serde(default)]
    pub lowercase: bool,
    /// Then rewritten, in order: `replace = [{ regex = "@.*$", with = "" }]`
    /// makes `ann@example.org` and the screen name `ann` one value.
    #[serde(default)]
    pub replace: Vec<LinkRewrite>,
}

impl LinkSettings {
    /// The (datasource, field) pairs of the link.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .filter_map(|member| member.split_once(':'))
    }
}

/// `[services.<name>]`: a service that may identify on `/ws/services`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// What it identifies with (`{"op": 1, "data": {"token": …}}`).
    pub token: String,
    /// Its group, for `GROUP` intents; default: its name.
    pub group: Option<String>,
    /// The remote datasources it may serve (`data.datasource.id` of its
    /// `IDENTIFY`); none unless listed, so a token cannot take over another
    /// service's datasource or declare datasources without end. `"*"`: any
    /// id that no other service's list names (for development).
    pub datasources: Option<Vec<String>>,
}

/// `[broker]`: how the nodes of a cluster reach each other.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// `memory` (one node) or `redis`.
    #[serde(rename = "type")]
    pub kind: BrokerKind,
    /// Redis's address; TLS (`rediss://`) and a password through the URL.
    pub url: String,
    /// Prefix of every Redis channel: clusters sharing a Redis differ in it.
    pub prefix: String,
    /// Entries kept of each stream that need not be whole (health measures,
    /// polled documents, remote datasources' records); an embedded
    /// datasource's records are kept whole, every node's copy built from them.
    pub history_size: u64,
    /// How long such a stream is kept after its last entry.
    #[serde(deserialize_with = "duration")]
    pub history_ttl: Duration,
    /// Where the other nodes reach this one over HTTP (peer recovery:
    /// copying a ready node's published records). `None`: `http://` and
    /// the listening address, or this host's name when it listens on
    /// every address (`0.0.0.0`).
    pub advertise_url: Option<String>,
    /// What the broker keeps of an embedded datasource's stream of
    /// records: `applied` (default), what some node heard of in the last
    /// 5 minutes has not applied yet; or `whole`, everything.
    pub records_retention: RecordsRetention,
    /// With `records_retention = "applied"`, how long entries stay at
    /// least, applied or not: nodes restarted or added within it catch up
    /// from the stream rather than copying a peer's records.
    #[serde(deserialize_with = "duration")]
    pub records_kept_for: Duration,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(try_from = "String")]
pub enum RecordsRetention {
    #[default]
    Applied,
    Whole,
}

impl TryFrom<String> for RecordsRetention {
    type Error = String;

    fn try_from(kind: String) -> Result<RecordsRetention, String> {
        match kind.as_str() {
            "applied" => Ok(RecordsRetention::Applied),
            "whole" => Ok(RecordsRetention::Whole),
            other => Err(format!(
                "`records_retention` is `applied` or `whole`, not `{other}`"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(try_from = "String")]
pub enum BrokerKind {
    #[default]
    Memory,
    Redis,
}

impl TryFrom<String> for BrokerKind {
    type Error = String;

    fn try_from(kind: String) -> Result<BrokerKind, String> {
        match kind.as_str() {
            "memory" => Ok(BrokerKind::Memory),
            "redis" => Ok(BrokerKind::Redis),
            other => Err(format!(
                "unknown broker type `{other}`; known types: memory, redis"
            )),
        }
    }
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            kind: BrokerKind::Memory,
            url: "redis://127.0.0.1:6379".into(),
            prefix: "tributary".into(),
            history_size: 10_000,
            history_ttl: Duration::from_secs(3600),
            advertise_url: None,
            records_retention: RecordsRetention::Applied,
            records_kept_for: Duration::from_secs(3600),
        }
    }
}

/// `POST /api/datasources/<id>/records`: records published to the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishSettings {
    /// Whether publishing is open on a server without tokens (with tokens, a
    /// token needs `publish = true`).
    pub enabled: bool,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a body may take to arrive, from the end of its headers:
    /// a stalled upload is closed (408) and frees its connection place.
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
}

impl Default for PublishSettings {
    fn default() -> Self {
        PublishSettings {
            enabled: false,
            max_body_bytes: 16 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// The live half: datasource health measured in the background.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSettings {
    /// How often each datasource's health and latency are measured (the
    /// `status:` and `latency:` channels, `PONG` stats).
    #[serde(deserialize_with = "duration")]
    pub health_interval: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            health_interval: Duration::from_secs(10),
        }
    }
}

/// Who may open a websocket. With no tokens anyone may (from an allowed origin).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// API tokens by name; the name (never the token) appears in logs.
    pub tokens: BTreeMap<String, TokenSettings>,
    /// Origins besides the server's own from which browsers may connect;
    /// `"*"` allows every origin.
    pub allowed_origins: Vec<String>,
    /// The server's own origins (`scheme://host[:port]`), as browsers reach it.
    /// Empty: `http://` with the listen address and its `localhost` /
    /// `127.0.0.1` / `[::1]` forms. Behind a proxy or TLS terminator, list the
    /// public address here, e.g. `["https://tributary.example.org"]`.
    pub public_origins: Vec<String>,
    /// Addresses of reverse proxies (IPs, or networks such as `10.0.0.0/8`)
    /// whose `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` headers are
    /// believed. From any other peer those headers are ignored.
    pub trusted_proxies: Vec<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub token: String,
    /// The datasources this token may use; all when absent.
    #[serde(default)]
    pub datasources: Option<Vec<String>>,
    /// Whether this token may publish records (`POST /api/datasources/<id>/records`).
    #[serde(default)]
    pub publish: bool,
}

// Written by hand so that a token never reaches a log line or an error message.
impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("token", &"<redacted>")
            .field("datasources", &self.datasources)
            .field("publish", &self.publish)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResultSettings {
    /// Results per `ITEMS_RECEIVE` message.
    pub batch_size: usize,
    /// The largest page an `ITEMS_REQUEST` may ask for.
    pub max_page_size: u64,
}

impl Default for ResultSettings {
    fn default() -> Self {
        ResultSettings {
            batch_size: 500,
            max_page_size: 100_000,
        }
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest inbound message, in bytes; larger closes the connection with 4420.
    pub max_message_bytes: usize,
    /// Inbound messages per second a connection may send (with a burst of twice that).
    pub max_messages_per_second: u32,
    /// The same for a connection of `/ws/services`, where a remote
    /// datasource streams its results as replies.
    pub max_service_messages_per_second: u32,
    /// Bytes per second a connection of `/ws/services` may send other
    /// services — events, and replies to their events (with a burst of
    /// twice that); more closes it with 4420. Replies to the server's own
    /// requests do not count: each request bounds what it takes.
    pub max_service_bytes_per_second: u32,
    /// Requests one connection may have running at once.
    pub max_requests: usize,
    /// Live requests one connection may follow at once.
    pub max_live_queries: usize,
    /// Bytes of results buffered for a connection before its datasources wait.
    pub outbound_buffer_bytes: usize,
    /// How long results may wait on a client that does not read before it is
    /// disconnected (4420).
    #[serde(deserialize_with = "duration")]
    pub slow_client_timeout: Duration,
    /// How often the server pings each connection.
    #[serde(deserialize_with = "duration")]
    pub ping_interval: Duration,
    /// How long after a ping without any frame from the client the connection is closed.
    #[serde(deserialize_with = "duration")]
    pub pong_timeout: Duration,
    /// How long a remote datasource stays listed once no service serves it
    /// (on any node): a service restarting within it keeps its place; then
    /// it is removed and its slot freed.
    #[serde(deserialize_with = "duration")]
    pub remote_linger: Duration,
    /// Websocket connections the server holds at once; more are refused with HTTP 503.
    /// A connection counts until its socket is really closed.
    pub max_connections: usize,
    /// How long a closing connection may take to deliver its last messages and
    /// the close frame; then its socket is reset.
    #[serde(deserialize_with = "duration")]
    pub close_timeout: Duration,
    /// CPU-bound searches (of embedded datasets) one connection may run at
    /// once; its other searches wait their turn. No client can occupy every core.
    pub max_concurrent_searches: usize,
    /// CPU-bound searches running at once over the whole server; 0: one per core.
    pub search_threads: usize,
    /// Longest query, in bytes.
    pub max_query_bytes: usize,
    /// Deepest nesting of parentheses in a query (at most 100).
    pub max_query_depth: usize,
    /// Most terms, phrases and ranges in one query.
    pub max_query_clauses: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            max_messages_per_second: 50,
            max_service_messages_per_second: 5000,
            max_service_bytes_per_second: 16 * 1024 * 1024,
            max_requests: 16,
            max_live_queries: 16,
            outbound_buffer_bytes: 4 * 1024 * 1024,
            slow_client_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            remote_linger: Duration::from_secs(30),
            close_timeout: Duration::from_secs(10),
            max_concurrent_searches: 2,
            search_threads: 0,
            max_query_bytes: QueryLimits::default().max_bytes,
            max_query_depth: QueryLimits::default().max_depth,
            max_query_clauses: QueryLimits::default().max_clauses,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default)]
    static_dir: Option<PathBuf>,
    #[serde(default)]
    datasources: Option<BTreeMap<String, RawDatasource>>,
    #[serde(default, deserialize_with = "optional_duration")]
    default_timeout: Option<Duration>,
    #[serde(default)]
    results: ResultSettings,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    auth: AuthSettings,
    #[serde(default)]
    live: LiveSettings,
    #[serde(default)]
    publish: PublishSettings,
    #[serde(default)]
    services: BTreeMap<String, ServiceSettings>,
    #[serde(default)]
    broker: BrokerSettings,
    #[serde(default)]
    links: BTreeMap<String, LinkSettings>,
    #[serde(default)]
    data_dir: Option<PathBuf>,
    /// `TRIBUTARY_CONFIG` names the file; it is not a setting of its own.
    #[serde(default)]
    #[allow(dead_code)]
    config: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawDatasource {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    #[serde(default, deserialize_with = "optional_duration")]
    timeout: Option<Duration>,
    #[serde(flatten)]
    options: Map<String, Value>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

/// `TRIBUTARY_*` variables that belong to clients and plugins.
const CLIENT_VARIABLES: [&str; 3] = ["TRIBUTARY_TOKEN", "TRIBUTARY_URL", "TRIBUTARY_LOG"];

/// Loads the settings from an optional file, the environment and a listen override.
/// Makes the config file's relative paths (the UI's folder, datasource
/// files) relative to `folder`.
fn resolve_paths(raw: &mut RawSettings, folder: &Path) {
    let resolve = |path: &Path| {
        if path.is_relative() {
            folder.join(path)
        } else {
            path.to_owned()
        }
    };
    if let Some(dir) = &raw.static_dir {
        raw.static_dir = Some(resolve(dir));
    }
    if let Some(dir) = &raw.data_dir {
        raw.data_dir = Some(resolve(dir));
    }
    for datasource in raw.datasources.iter_mut().flat_map(|d| d.values_mut()) {
        for key in FILE_OPTIONS {
            if let Some(Value::String(path)) = datasource.options.get(*key) {
                let resolved = resolve(Path::new(path)).to_string_lossy().into_owned();
                datasource
                    .options
                    .insert((*key).to_owned(), Value::String(resolved));
            }
        }
    }
}

/// Datasource options that name files.
const FILE_OPTIONS: &[&str] = &["path", "mapping"];

pub fn load(file: Option<&Path>, listen: Option<&str>) -> Result<Settings, String> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        if !file.exists() {
            return Err(format!("config file {} does not exist", file.display()));
        }
        builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
    }
    // The variables clients and plugins read (`loadgen`, the Python
    // package) are theirs, not settings: a shell exporting them for a
    // client still starts the server.
    let environment: config::Map<String, String> = std::env::vars()
        .filter(|(name, _)| !CLIENT_VARIABLES.contains(&name.as_str()))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix("TRIBUTARY")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(environment)),
    );
    if let Some(listen) = listen {
        builder = builder
            .set_override("listen", listen)
            .map_err(|e| e.to_string())?;
    }
    let mut raw: RawSettings = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| format!("invalid configuration: {e}"))?;
    // Paths in a config file mean the same wherever the server is started:
    // relative ones are relative to the file's folder.
    if let Some(folder) = file.and_then(Path::parent) {
        resolve_paths(&mut raw, folder);
    }
    // Each node started from a folder of its own keeps its own data.
    let beside = file
        .and_then(Path::parent)
        .map(|folder| {
            if folder.as_os_str().is_empty() {
                Path::new(".")
            } else {
                folder
            }
        })
        .unwrap_or(Path::new("."));
    raw.data_dir.get_or_insert_with(|| beside.join("data"));
    from_raw(raw)
}

fn from_raw(raw: RawSettings) -> Result<Settings, String> {
    let datasources = match raw.datasources {
        Some(map) => map
            .into_iter()
            .map(|(id, ds)| {
                let mut options = ds.options;
                // Keys of the whole table that adapters never see.
                options.remove("type");
                options.remove("name");
                options.remove("timeout");
                DatasourceSettings {
                    name: ds.name.unwrap_or_else(|| id.clone()),
                    timeout: ds.timeout,
                    id,
                    kind: ds.kind,
                    options,
                    data_dir: None,
                }
            })
            .collect(),
        None => demo_datasources(),
    };
    // The demo datasets come with the link between them, under whatever
    // ids a configuration serves them: without `[links.*]` of its own, one
    // address is one person in tweets and e-mails alike.
    let links = if raw.links.is_empty() {
        demo_links_for(&datasources)
    } else {
        raw.links
    };
    for (name, token) in &raw.auth.tokens {
        if token.token.len() < 8 {
            return Err(format!(
                "invalid configuration: `auth.tokens.{name}.token` must be at least 8 characters"
            ));
        }
        for id in token.datasources.iter().flatten() {
            if !datasources.iter().any(|d: &DatasourceSettings| &d.id == id) {
                return Err(format!(
                    "invalid configuration: `auth.tokens.{name}.datasources` names `{id}`, which is not a configured datasource"
                ));
            }
        }
    }
    if raw.results.batch_size == 0 {
        return Err("invalid configuration: `results.batch_size` must be at least 1".into());
    }
    for (name, service) in &raw.services {
        if service.token.len() < 8 {
            return Err(format!(
                "invalid configuration: `services.{name}.token` must be at least 8 characters"
            ));
        }
        if raw
            .services
            .iter()
            .any(|(other, s)| other != name && s.token == service.token)
        {
            return Err(format!(
                "invalid configuration: `services.{name}.token` is also another service's token"
            ));
        }
    }
    for (name, link) in &links {
        if let Err(error) = crate::expand::Normalizer::new(link.lowercase, &link.replace) {
            return Err(format!(
                "invalid configuration: `links.{name}.replace`: {error}"
            ));
        }
        if link.fields.len() < 2 {
            return Err(format!(
                "invalid configuration: `links.{name}.fields` must name at least two fields"
            ));
        }
        for member in &link.fields {
            let Some((id, _)) = member
                .split_once(':')
                .filter(|(id, f)| !id.is_empty() && !f.is_empty())
            else {
                return Err(format!(
                    "invalid configuration: `links.{name}.fields` has `{member}`; write each as `datasource:field`"
                ));
            };
            // Remote datasources join later, under ids no configured one has:
            // a link may name them only if a service may serve them.
            let known = datasources.iter().any(|d: &DatasourceSettings| d.id == id)
                || raw.services.values().any(|s| {
                    s.datasources
                        .as_ref()
                        .is_some_and(|ids| ids.iter().any(|i| i == id))
                });
            if !known {
                return Err(format!(
                    "invalid configuration: `links.{name}.fields` names datasource `{id}` (in `{member}`), which is not a configured datasource"
                ));
            }
        }
    }
    Ok(Settings {
        links,
        listen: raw.listen,
        static_dir: raw.static_dir,
        datasources,
        default_timeout: raw.default_timeout.unwrap_or(Duration::from_secs(30)),
        results: raw.results,
        limits: raw.limits,
        auth: raw.auth,
        live: raw.live,
        publish: raw.publish,
        services: raw.services,
        broker: raw.broker,
        data_dir: raw.data_dir,
    })
}

/// The datasources served when the config names none: the demo datasets built into the binary.
pub fn demo_datasources() -> Vec<DatasourceSettings> {
    [("emails", "Emails"), ("tweets", "Tweets")]
        .into_iter()
        .map(|(id, name)| {
            let mut options = Map::new();
            options.insert("embedded".into(), Value::from(id));
            DatasourceSettings {
                id: id.into(),
                name: name.into(),
                kind: "embedded".into(),
                timeout: None,
                options,
                data_dir: None,
            }
        })
        .collect()
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: default_listen(),
            static_dir: None,
            datasources: demo_datasources(),
            default_timeout: Duration::from_secs(30),
            results: ResultSettings::default(),
            limits: Limits::default(),
            auth: AuthSettings::default(),
            live: LiveSettings::default(),
            publish: PublishSettings::default(),
            services: BTreeMap::new(),
            broker: BrokerSettings::default(),
            links: demo_links(),
            data_dir: None,
        }
    }
}

/// The link between the demo datasets: a person's e-mail address, as the
/// author of tweets (`user.email`) and on e-mails.
pub fn demo_links() -> BTreeMap<String, LinkSettings> {
    let fields = ["tweets:user.email", "emails:from", "emails:to", "emails:cc"];
    BTreeMap::from([(
        "person".to_owned(),
        LinkSettings {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            lowercase: true,
            replace: Vec::new(),
        },
    )])
}

/// Which demo dataset (`tweets`, `emails`) a datasource serves, if any:
/// built in (`embedded = "tweets"`) or read from the repository's copy
/// (`path = ".../datasources/demo/tweets.ndjson"`).
fn demo_dataset(datasource: &DatasourceSettings) -> Option<&'static str> {
    if datasource.kind != "embedded" {
        return None;
    }
    let named = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let built_in = named(datasource.options.get("embedded"));
    let path = named(datasource.options.get("path")).map(|p| p.replace('\\', "/"));
    ["tweets", "emails"].into_iter().find(|name| {
        built_in.as_deref() == Some(*name)
            || path
                .as_deref()
                .is_some_and(|p| p.ends_with(&format!("datasources/demo/{name}.ndjson")))
    })
}

/// The demo's `person` link over the configured datasources that serve the
/// demo datasets (their ids in place of `tweets` and `emails`); none unless
/// both are served.
fn demo_links_for(datasources: &[DatasourceSettings]) -> BTreeMap<String, LinkSettings> {
    let ids: BTreeMap<&str, &str> = datasources
        .iter()
        .filter_map(|ds| demo_dataset(ds).map(|name| (name, ds.id.as_str())))
        .collect();
    if ids.len() < 2 {
        return BTreeMap::new();
    }
    demo_links()
        .into_iter()
        .map(|(name, mut link)| {
            link.fields = link
                .fields
                .iter()
                .filter_map(|member| {
                    let (dataset, field) = member.split_once(':')?;
                    Some(format!("{}:{field}", ids.get(dataset)?))
                })
                .collect();
            (name, link)
        })
        .collect()
}

fn duration_from_value(value: Value) -> Result<Duration, String> {
    match value {
        Value::Number(n) => {
            let seconds = n.as_f64().ok_or("not a number")?;
            Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
        }
        Value::String(s) => parse_duration(&s),
        other => Err(format!("expected a duration, found {other}")),
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    duration_from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(value) => duration_from_value(value)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_datasources() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9\"\n[datasources.tweets]\ntype = \"fixtures\"\npath = \"x.ndjson\"\nname = \"Tweets\"\ntimeout = \"2s\"\n",
        )
        .unwrap();
        let settings = load(Some(&file), None).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:9");
        let ds = &settings.datasources[0];
        assert_eq!(
            (ds.id.as_str(), ds.name.as_str(), ds.kind.as_str()),
            ("tweets", "Tweets", "fixtures")
        );
        assert_eq!(ds.timeout, Some(Duration::from_secs(2)));
        // Relative to the file's folder, wherever the server starts.
        let beside = dir.path().join("x.ndjson").to_string_lossy().into_owned();
        assert_eq!(ds.options.get("path"), Some(&Value::from(beside)));
        assert!(!ds.options.contains_key("type"));
    }

    #[test]
    fn a_configuration_serving_the_demo_datasets_keeps_their_link() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "[datasources.tw]\ntype = \"embedded\"\npath = \"/srv/tributary/datasources/demo/tweets.ndjson\"\n\
             [datasources.mail]\ntype = \"embedded\"\nembedded = \"emails\"\n\
             [datasources.other]\ntype = \"embedded\"\npath = \"x.ndjson\"\n",
        )
        .unwrap();
        let settings = load(Some(&file), None).unwrap();
        assert_eq!(
            settings.links["person"].fields,
            ["tw:user.email", "mail:from", "mail:to", "mail:cc"]
        );
        assert!(settings.links["person"].lowercase);
        // One of the two alone links nothing; links of one's own replace it.
        std::fs::write(
            &file,
            "[datasources.tw]\ntype = \"embedded\"\nembedded = \"tweets\"\n",
        )
        .unwrap();
        assert!(load(Some(&file), None).unwrap().links.is_empty());
        std::fs::write(
            &file,
            "[datasources.tw]\ntype = \"embedded\"\nembedded = \"tweets\"\n\
             [datasources.mail]\ntype = \"embedded\"\nembedded = \"emails\"\n\
             [links.who]\nfields = [\"tw:user.screen_name\", \"mail:from\"]\n",
        )
        .unwrap();
        let own = load(Some(&file), None).unwrap().links;
        assert_eq!(own.keys().collect::<Vec<_>>(), ["who"]);
        // The example configuration serves them with the demo's link.
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("tributary.example.toml");
        let settings = load(Some(&example), None).unwrap();
        assert_eq!(settings.links, demo_links());
    }

    #[test]
    fn a_bad_value_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "[limits]\nmax_requests = \"many\"\n").unwrap();
        let error = load(Some(&file), None).unwrap_err();
        assert!(error.contains("max_requests"), "{error}");
    }

    #[test]
    fn the_example_config_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tributary.example.toml");
        let settings = load(Some(&file), None).unwrap();
        assert_eq!(settings.datasources.len(), 2);
        assert_eq!(settings.limits.max_connections, 10_000);
    }

    #[test]
    fn tokens_are_redacted_and_checked() {
        let token = TokenSettings {
            token: "hunter2-hunter2".into(),
            datasources: None,
            publish: false,
        };
        assert!(!format!("{token:?}").contains("hunter2"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "[auth.tokens.a]\ntoken = \"long-enough-token\"\ndatasources = [\"nope\"]\n",
        )
        .unwrap();
        let error = load(Some(&file), None).unwrap_err();
        assert!(
            error.contains("auth.tokens.a.datasources") && error.contains("nope"),
            "{error}"
        );
    }
}
