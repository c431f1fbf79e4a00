//! Reading a reply for its shape only: counts, sizes and timings, without
//! decoding a single result. What a load generator needs, at a fraction of
//! the cost of [`Client::request`](crate::Client::request).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::{Client, ClientError, Frame, Request, RequestId};

/// When one datasource's batches arrived, counted from the request's start.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatasourceTiming {
    pub first: Duration,
    pub last: Duration,
}

/// The shape of one reply.
#[derive(Debug, Clone, Default)]
pub struct RequestStats {
    pub datasources: HashMap<String, DatasourceTiming>,
    pub items: u64,
    pub errors: u64,
    /// Every message read meanwhile, and its bytes (other requests' included).
    pub messages: u64,
    pub bytes: u64,
    pub canceled: bool,
}

impl RequestStats {
    /// Time to the last batch of the slowest datasource.
    pub fn latency(&self) -> Duration {
        self.datasources
            .values()
            .map(|t| t.last)
            .max()
            .unwrap_or_default()
    }

    /// Time to the first batch of the fastest datasource.
    pub fn first_result(&self) -> Duration {
        self.datasources
            .values()
            .map(|t| t.first)
            .min()
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Glance<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(rename = "request-id")]
    request_id: Option<RequestId>,
    #[serde(borrow)]
    items: Option<ItemsGlance<'a>>,
}

#[derive(Deserialize)]
struct ItemsGlance<'a> {
    #[serde(borrow)]
    server: &'a str,
    results: Count,
}

impl<'a> Glance<'a> {
    /// Reads a message by its structure ([`crate::scan`]), or decodes it
    /// with serde_json when the scanner gives up.
    fn read(text: &'a str) -> Result<Glance<'a>, ClientError> {
        let undecodable = |e: serde_json::Error| ClientError::Undecodable(e.to_string());
        let Some(shape) = crate::scan::shape(text) else {
            return serde_json::from_str(text).map_err(undecodable);
        };
        let request_id = match shape.request_id {
            Some(raw) => serde_json::from_str(raw).map_err(undecodable)?,
            None => None,
        };
        let items = shape
            .server
            .zip(shape.results)
            .map(|(server, results)| ItemsGlance {
                server,
                results: Count(results),
            });
        Ok(Glance {
            kind: shape.kind,
            request_id,
            items,
        })
    }
}

/// The length of a JSON array, read without building its elements.
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Count, D::Error> {
        struct Counter;
        impl<'de> Visitor<'de> for Counter {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
        }
        deserializer.deserialize_seq(Counter)
    }
}

impl Client {
    /// Sends `request` and reads its reply for counts and timings only.
    pub async fn request_stats(
        &mut self,
        request: impl Request,
    ) -> Result<RequestStats, ClientError> {
        let started = Instant::now();
        let id = self.start(request).await?;
        let mut stats = RequestStats::default();
        loop {
            let text = match self.next_frame().await? {
                Frame::Text(text) => text,
                Frame::Binary(_) => continue,
                Frame::Closed(code) => return Err(ClientError::Closed(code)),
            };
            let at = started.elapsed();
            stats.messages += 1;
            stats.bytes += text.len() as u64;
            let glance = Glance::read(&text)?;
            if glance.request_id.as_ref() != Some(&id) {
                continue;
            }
            match glance.kind {
                "ITEMS_RECEIVE" => {
                    if let Some(items) = glance.items {
                        stats.items += items.results.0;
                        let timing = stats.datasources.entry(items.server.to_owned()).or_insert(
                            DatasourceTiming {
                                first: at,
                                last: at,
                            },
                        );
                        timing.last = at;
                    }
                }
                "ERROR" => stats.errors += 1,
                "REQUEST_COMPLETED" => return Ok(stats),
                "REQUEST_CANCELED" => {
                    stats.canceled = true;
                    return Ok(stats);
                }
                _ => {}
            }
        }
    }
}
