//! The `elasticsearch` adapter: an index (name, comma list, pattern or alias)
//! of an Elasticsearch 7.x/8.x cluster, through the official client.
//!
//! - fields come from `_mapping`, flattened to dotted paths ([`mapping`]);
//! - searches are `query_string` queries (default field `*`, lenient), with an
//!   exact total and highlights; `_source` is flattened like the fixtures' records
//!   and `_index` is kept among the fields, while the response is read ([`hits`]);
//! - a page inside the result window (`from + size <= max_result_window`) is one
//!   `_search`; a deeper page walks a point in time with `search_after` (or a
//!   scroll when the cluster has no PIT) and streams each fetched batch on;
//! - with `live_field`, live queries poll for new documents ([`live`]).

mod deep;
pub mod expand;
pub mod hits;
mod live;
mod mapping;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::http::{StatusCode, Url};
use elasticsearch::{indices::IndicesGetMappingParts, Elasticsearch, SearchParts};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use tributary_datasource::{
    Datasource, DatasourceError, DatasourceSettings, Expand, ExpandQuery, Expansion, Field,
    FieldList, Healthy, ListValues, Live, RequestContext, ResultSink, SearchQuery, SetupError,
    Subsequence, WorkLimits,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ElasticsearchOptions {
    /// One node URL, or several.
    url: OneOrMany,
    /// Index name, comma list, pattern (`logs-*`) or alias.
    index: String,
    username: Option<String>,
    password: Option<String>,
    /// An encoded API key, as Kibana shows it (base64 of `id:key`).
    api_key: Option<String>,
    /// PEM file of the CA that signed the cluster's certificate.
    ca_cert: Option<PathBuf>,
    /// Skip certificate checks (a local cluster with a self-signed certificate only).
    #[serde(default)]
    insecure: bool,
    /// Only these fields are offered and returned (paths or patterns such as `user.*`).
    fields: Option<Vec<String>>,
    /// Fields a bare term is searched in (default: all).
    #[serde(default = "default_field")]
    default_field: String,
    /// The cluster's `index.max_result_window`: deeper pages use a point in time.
    #[serde(default = "default_window")]
    max_result_window: u64,
    /// Hits fetched per call when walking past the result window.
    #[serde(default = "default_scan_batch")]
    scan_batch: u64,
    /// A time (or ever-growing number) field: live queries poll for
    /// documents whose value is at or after the newest seen.
    live_field: Option<String>,
    /// How often live queries poll (default 5 s).
    live_interval: Option<String>,
    /// Documents per shard an expansion's aggregations look at (a `sampler`).
    #[serde(default = "default_sample_size")]
    sample_size: u64,
}

fn default_sample_size() -> u64 {
    expand::DEFAULT_SAMPLE_SIZE
}

fn default_field() -> String {
    "*".into()
}
fn default_window() -> u64 {
    10_000
}
fn default_scan_batch() -> u64 {
    1_000
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

pub struct ElasticsearchDatasource {
    client: Elasticsearch,
    /// The nodes, without credentials, for the server's logs (never for clients).
    url: String,
    index: String,
    source_filter: Option<Vec<String>>,
    default_field: String,
    max_result_window: u64,
    scan_batch: u64,
    /// Set when live queries are configured (`live_field`).
    live: Option<live::LiveOptions>,
    /// Documents per shard an expansion's aggregations look at.
    sample_size: u64,
}

impl ElasticsearchDatasource {
    pub fn from_settings(settings: &DatasourceSettings) -> Result<Arc<dyn Datasource>, SetupError> {
        let options: ElasticsearchOptions = settings.options()?;
        let urls = match &options.url {
            OneOrMany::One(url) => vec![url.clone()],
            OneOrMany::Many(urls) => urls.clone(),
        };
        let parsed = urls
            .iter()
            .map(|u| {
                Url::parse(u).map_err(|e| {
                    let u = tributary_datasource::redact_userinfo(u);
                    settings.error(format!("key `url`: `{u}` is not a URL: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = parsed
            .first()
            .cloned()
            .ok_or_else(|| settings.error("key `url`: name at least one node"))?;
        let mut builder = if parsed.len() == 1 {
            TransportBuilder::new(SingleNodeConnectionPool::new(first))
        } else {
            TransportBuilder::new(MultiNodeConnectionPool::round_robin(parsed, None))
        };
        builder = builder.enable_meta_header(false);
        match (&options.username, &options.password, &options.api_key) {
            (Some(user), Some(password), None) => {
                builder = builder.auth(Credentials::Basic(user.clone(), password.clone()));
            }
            (None, None, Some(key)) => {
                builder = builder.auth(Credentials::EncodedApiKey(key.clone()));
            }
            (None, None, None) => {}
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(settings.error("`username` and `password` go together"))
            }
            (_, _, Some(_)) => {
                return Err(
                    settings.error("set either `username`/`password` or `api_key`, not both")
                )
            }
        }
        if options.insecure {
            builder = builder.cert_validation(CertificateValidation::None);
        } else if let Some(path) = &options.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                settings.error(format!(
                    "key `ca_cert`: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let certificate = Certificate::from_pem(&pem).map_err(|e| {
                settings.error(format!(
                    "key `ca_cert`: {} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.cert_validation(CertificateValidation::Full(certificate));
        }
        if let Some(timeout) = settings.timeout {
            // A safety net under the federation's own per-call timeout.
            builder = builder.timeout(timeout + Duration::from_secs(1));
        }
        let transport = builder
            .build()
            .map_err(|e| settings.error(format!("cannot set up the client: {e}")))?;
        if options.index.trim().is_empty() {
            return Err(settings.error("key `index`: name an index, a pattern or an alias"));
        }
        let live = match (&options.live_field, &options.live_interval) {
            (Some(field), interval) => {
                let interval = match interval {
                    Some(text) => tributary_datasource::parse_duration(text)
                        .map_err(|e| settings.error(format!("key `live_interval`: {e}")))?,
                    None => live::DEFAULT_INTERVAL,
                };
                if interval.is_zero() {
                    return Err(settings.error("key `live_interval`: must be more than 0"));
                }
                Some(live::LiveOptions {
                    field: field.clone(),
                    interval,
                })
            }
            (None, Some(_)) => {
                return Err(settings.error(
                    "key `live_interval` needs `live_field` (the time field new documents are found by)",
                ))
            }
            (None, None) => None,
        };
        Ok(Arc::new(ElasticsearchDatasource {
            client: Elasticsearch::new(transport),
            url: tributary_datasource::redact_userinfo(&urls.join(", ")),
            index: options.index,
            source_filter: options.fields,
            default_field: options.default_field,
            max_result_window: options.max_result_window.max(1),
            scan_batch: options.scan_batch.clamp(1, 10_000),
            live,
            sample_size: options.sample_size.clamp(1, 1_000_000),
        }))
    }

    fn indices(&self) -> Vec<&str> {
        self.index.split(',').map(str::trim).collect()
    }

    /// The user's query as Elasticsearch reads it.
    fn query_clause(&self, query: &str) -> Value {
        if query.trim().is_empty() {
            json!({"match_all": {}})
        } else {
            json!({"query_string": {
                "query": query,
                "default_field": self.default_field,
                "lenient": true,
            }})
        }
    }

    /// The query, highlight and source filter every search of a request
    /// shares; `as_of` (a filter) limits it to what a live cursor has seen.
    fn search_body(&self, query: &str, as_of: Option<&Value>) -> Map<String, Value> {
        let query = match as_of {
            None => self.query_clause(query),
            Some(filter) => {
                json!({"bool": {"must": [self.query_clause(query)], "filter": [filter]}})
            }
        };
        let mut body = Map::new();
        body.insert("query".into(), query);
        body.insert(
            "highlight".into(),
            json!({"fields": {"*": {}}, "require_field_match": false}),
        );
        if let Some(fields) = &self.source_filter {
            body.insert("_source".into(), json!(fields));
        }
        body
    }

    fn is_exposed(&self, path: &str) -> bool {
        match &self.source_filter {
            None => true,
            Some(patterns) => patterns.iter().any(|p| matches_pattern(p, path)),
        }
    }

    /// One page inside the result window: a single `_search`.
    async fn search_window(
        &self,
        query: &SearchQuery,
        as_of: Option<&Value>,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        let mut body = self.search_body(&query.query, as_of);
        body.insert("from".into(), json!(query.from));
        body.insert("size".into(), json!(query.size));
        body.insert("track_total_hits".into(), json!(true));
        let response = self.send_search(Value::Object(body)).await;
        let page = self.read_page(response, "search").await?;
        results.set_total(page.total.unwrap_or(0));
        results.push(page.into_items()).await?;
        Ok(())
    }

    /// Sends one `_search` of `body` over the datasource's indices.
    async fn send_search(
        &self,
        body: Value,
    ) -> Result<elasticsearch::http::response::Response, elasticsearch::Error> {
        let indices = self.indices();
        self.client
            .search(SearchParts::Index(&indices))
            .body(body)
            .send()
            .await
    }

    /// Reads a response as JSON, turning every failure into an error the user can act on.
    async fn read(
        &self,
        response: Result<elasticsearch::http::response::Response, elasticsearch::Error>,
        what: &str,
    ) -> Result<Value, DatasourceError> {
        let body = self.read_body(response, what).await?;
        serde_json::from_slice(&body).map_err(|_| self.not_json(what, StatusCode::OK, &body))
    }

    /// Reads a search (or scroll) response into items, without a JSON tree.
    async fn read_page(
        &self,
        response: Result<elasticsearch::http::response::Response, elasticsearch::Error>,
        what: &str,
    ) -> Result<hits::Page, DatasourceError> {
        let body = self.read_body(response, what).await?;
        let page = std::str::from_utf8(&body)
            .map_err(|_| self.not_json(what, StatusCode::OK, &body))
            .and_then(hits::Page::parse);
        page.inspect_err(|_| {
            let text = String::from_utf8_lossy(&body);
            tracing::warn!(url = %self.url, body = %tributary_datasource::redact_userinfo(&snippet(&text)), "an unreadable search response");
        })
    }

    fn not_json(&self, what: &str, status: StatusCode, body: &[u8]) -> DatasourceError {
        // Something else answered (a proxy's error page?): its body stays in the log.
        let text = String::from_utf8_lossy(body);
        tracing::warn!(url = %self.url, %status, body = %tributary_datasource::redact_userinfo(&snippet(&text)), "not an Elasticsearch answer");
        DatasourceError::unavailable(format!(
            "Elasticsearch answered {what} with {status} and a body that is not JSON"
        ))
    }

    /// A successful response's body (as sent: no text decoding, no copy);
    /// any other status as an error in the user's terms.
    async fn read_body(
        &self,
        response: Result<elasticsearch::http::response::Response, elasticsearch::Error>,
        what: &str,
    ) -> Result<bytes::Bytes, DatasourceError> {
        let response = response.map_err(|e| self.transport_error(&e))?;
        let status = response.status_code();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if status.is_success() {
            return Ok(bytes);
        }
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|_| self.not_json(what, status, &bytes))?;
        let reason = error_reason(&body);
        Err(match status {
            StatusCode::BAD_REQUEST => DatasourceError::bad_query(reason),
            StatusCode::UNAUTHORIZED => DatasourceError::unauthorized(format!(
                "Elasticsearch refused the credentials (401): {reason}"
            )),
            StatusCode::FORBIDDEN => DatasourceError::unauthorized(format!(
                "the configured user may not {what} on `{}` (403): {reason}",
                self.index
            )),
            StatusCode::NOT_FOUND => DatasourceError::unavailable(format!(
                "`{}` was not found (404): {reason}",
                self.index
            )),
            StatusCode::TOO_MANY_REQUESTS => DatasourceError::unavailable(format!(
                "Elasticsearch is overloaded (429), try again shortly: {reason}"
            )),
            _ => DatasourceError::unavailable(format!("Elasticsearch failed ({status}): {reason}")),
        })
    }

    /// The client's error says which URL failed and how; the user hears how.
    fn transport_error(&self, error: &elasticsearch::Error) -> DatasourceError {
        let detail = tributary_datasource::redact_userinfo(&error.to_string());
        tracing::warn!(url = %self.url, error = %detail, "Elasticsearch request failed");
        if error.is_timeout() {
            DatasourceError::timeout("Elasticsearch did not answer in time")
        } else {
            DatasourceError::unavailable(format!(
                "cannot reach Elasticsearch: {}",
                transport_cause(error)
            ))
        }
    }
}

impl ElasticsearchDatasource {
    /// A page of `query`, limited by `as_of` (a filter) when given.
    async fn search_as_of(
        &self,
        query: &SearchQuery,
        as_of: Option<&Value>,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        if query.from.saturating_add(query.size) <= self.max_result_window {
            self.search_window(query, as_of, results).await
        } else {
            self.search_deep(query, as_of, results).await
        }
    }
}

#[async_trait]
impl Datasource for ElasticsearchDatasource {
    async fn fields(&self, _: &RequestContext) -> Result<FieldList, DatasourceError> {
        let indices = self.indices();
        let response = self
            .client
            .indices()
            .get_mapping(IndicesGetMappingParts::Index(&indices))
            .send()
            .await;
        let body = self.read(response, "read the mapping").await?;
        let mut fields: Vec<Field> = mapping::fields_of(&body)
            .into_iter()
            .filter(|f| self.is_exposed(&f.path))
            .collect();
        fields.push(Field {
            path: "_index".into(),
            kind: "keyword".into(),
        });
        Ok(FieldList {
            index: self.index.clone(),
            fields,
        })
    }

    async fn search(
        &self,
        _: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        self.search_as_of(query, None, results).await
    }

    fn live(&self) -> Option<&dyn Live> {
        self.live.as_ref().map(|_| self as &dyn Live)
    }

    fn expander(&self) -> Option<&dyn Expand> {
        Some(self)
    }

    fn value_lister(&self) -> Option<&dyn ListValues> {
        Some(self)
    }

    /// `GET /`: reachable, and really Elasticsearch (7.14+ say so in a header).
    async fn health(&self) -> Result<Healthy, DatasourceError> {
        self.check_health().await?;
        Ok(Healthy::default())
    }
}

#[async_trait]
impl Expand for ElasticsearchDatasource {
    /// `terms` / `significant_terms` aggregations under a `sampler`.
    async fn expand(
        &self,
        request: &RequestContext,
        query: &ExpandQuery,
        _work: &WorkLimits,
    ) -> Result<Option<Expansion>, DatasourceError> {
        let fields = self.fields(request).await?;
        self.expand_with_aggregations(query, &fields)
            .await
            .map(Some)
    }
}

#[async_trait]
impl ListValues for ElasticsearchDatasource {
    /// A `terms` aggregation whose `include` is the hint as a regular expression.
    async fn values_like(
        &self,
        request: &RequestContext,
        field: &str,
        hint: &Subsequence,
        limit: usize,
    ) -> Result<Vec<String>, DatasourceError> {
        let fields = self.fields(request).await?;
        self.values_like_by_terms(field, &fields, hint, limit).await
    }
}

impl ElasticsearchDatasource {
    async fn check_health(&self) -> Result<(), DatasourceError> {
        let response = self
            .client
            .info()
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let product = response
            .headers()
            .get("x-elastic-product")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self.read(Ok(response), "answer").await?;
        let version = body["version"]["number"].as_str().unwrap_or_default();
        let modern = version
            .split('.')
            .map(|n| n.parse::<u32>().unwrap_or(0))
            .take(2)
            .collect::<Vec<_>>()
            >= vec![7, 14];
        match product.as_deref() {
            Some("Elasticsearch") => Ok(()),
            None if !modern && !version.is_empty() => Ok(()),
            _ => Err(DatasourceError::unavailable(format!(
                "{} does not identify as Elasticsearch (no `X-Elastic-Product: Elasticsearch` header)",
                self.url
            ))),
        }
    }
}

/// What went wrong on the way to the cluster, in a few words.
fn transport_cause(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            return match io.kind() {
                ErrorKind::ConnectionRefused => "connection refused",
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => "connection reset",
                ErrorKind::TimedOut => "connection timed out",
                ErrorKind::NotFound => "host not found",
                ErrorKind::UnexpectedEof => "connection closed early",
                _ => "connection failed",
            };
        }
        current = e.source();
    }
    let text = error.to_string();
    if text.contains("dns error") || text.contains("failed to lookup") {
        "host not found"
    } else if text.contains("certificate") || text.contains("tls") || text.contains("TLS") {
        "TLS handshake failed (see `ca_cert`)"
    } else {
        "connection failed"
    }
}

/// `error.root_cause[0]` (type: reason), the shape Elasticsearch uses for every failure.
fn error_reason(body: &Value) -> String {
    let error = &body["error"];
    let cause = error["root_cause"]
        .as_array()
        .and_then(|causes| causes.first())
        .unwrap_or(error);
    let reason = match (cause["type"].as_str(), cause["reason"].as_str()) {
        (Some(kind), Some(reason)) => format!("{kind}: {reason}"),
        (None, Some(reason)) => reason.to_owned(),
        _ => match error {
            Value::String(text) => text.clone(),
            _ => "no reason given".to_owned(),
        },
    };
    tributary_datasource::redact_userinfo(&snippet(&reason))
}

fn snippet(text: &str) -> String {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// `*` matches any run of characters, as in Elasticsearch's field patterns.
fn matches_pattern(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, tail)) => {
            let Some(rest) = path.strip_prefix(head) else {
                return false;
            };
            if tail.is_empty() {
                return true;
            }
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| matches_pattern(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_patterns() {
        assert!(matches_pattern("user.*", "user.name"));
        assert!(matches_pattern("*name", "user.screen_name"));
        assert!(matches_pattern("text", "text"));
        assert!(!matches_pattern("user.*", "users"));
    }

    #[test]
    fn error_reasons_of_every_shape() {
        let body = json!({"error": {"root_cause": [{"type": "query_shard_exception", "reason": "Failed to parse query [a:(]"}],
            "type": "search_phase_execution_exception", "reason": "all shards failed"}, "status": 400});
        assert_eq!(
            error_reason(&body),
            "query_shard_exception: Failed to parse query [a:(]"
        );
        assert_eq!(
            error_reason(&json!({"error": "no handler found", "status": 400})),
            "no handler found"
        );
    }
}
