//! Live queries on Elasticsearch: polling on a time field (`live_field`).
//!
//! A live query's position is the newest value of the field it has seen and
//! the ids of the documents seen with exactly that value. Each poll asks for
//! the query's documents at or after that value, oldest first, and skips the
//! ids already seen at it: documents that share a timestamp are neither
//! delivered twice nor skipped, and no sortable `_id` (which Elasticsearch 8
//! refuses to sort on) is needed as a tiebreaker. A live query's page is
//! limited to what its position has seen, so nothing arrives both in the
//! page and as an append.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tributary_datasource::{
    DatasourceError, Item, Live, LiveCursor, LiveMode, RequestContext, ResultSink, SearchQuery,
    SharedPolls, Watch,
};

use super::hits::Hit;
use super::ElasticsearchDatasource;

pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Documents asked for per call.
const POLL_BATCH: usize = 500;
/// Calls one poll makes at most; the rest waits for the next poll.
const MAX_CALLS_PER_POLL: usize = 20;

pub(super) struct LiveOptions {
    pub field: String,
    pub interval: Duration,
}

/// Where a live query stands (its [`LiveCursor`]).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Position {
    /// The newest value of the live field seen (a sort value: epoch
    /// milliseconds for a date); `None` before any document had the field.
    at: Option<Value>,
    /// The documents seen with exactly that value.
    ids: Vec<String>,
}

impl Position {
    fn of(cursor: &LiveCursor) -> Position {
        serde_json::from_value(cursor.0.clone()).unwrap_or_default()
    }

    fn cursor(&self) -> LiveCursor {
        LiveCursor(serde_json::to_value(self).unwrap_or_default())
    }

    /// A filter for the documents this position has seen.
    fn seen(&self, field: &str) -> Value {
        let without_field = json!({"bool": {"must_not": {"exists": {"field": field}}}});
        match &self.at {
            None => without_field,
            Some(at) => json!({"bool": {"should": [
                {"range": {field: {"lt": at}}},
                {"ids": {"values": self.ids}},
                without_field,
            ], "minimum_should_match": 1}}),
        }
    }

    /// A filter for the documents that may be new to this position.
    fn maybe_new(&self, field: &str) -> Value {
        match &self.at {
            None => json!({"exists": {"field": field}}),
            Some(at) => json!({"range": {field: {"gte": at}}}),
        }
    }

    /// Takes a hit (sorted oldest first) if it is new; returns whether it was.
    fn take(&mut self, at: &Value, id: &str) -> bool {
        if self.at.as_ref() == Some(at) {
            if self.ids.iter().any(|seen| seen == id) {
                return false;
            }
        } else {
            self.at = Some(at.clone());
            self.ids.clear();
        }
        self.ids.push(id.to_owned());
        true
    }
}

impl ElasticsearchDatasource {
    fn live_options(&self) -> Result<&LiveOptions, DatasourceError> {
        self.live
            .as_ref()
            .ok_or_else(|| DatasourceError::bad_query("this datasource has no `live_field`"))
    }

    /// One `_search` for live queries: the hits, each with its sort values.
    async fn live_search(&self, body: Value) -> Result<Vec<Hit>, DatasourceError> {
        let response = self.send_search(body).await;
        Ok(self.read_page(response, "search").await?.hits)
    }

    /// The newest position now: the highest value of the field, and the
    /// documents that have it.
    async fn newest(&self, field: &str) -> Result<Position, DatasourceError> {
        let hits = self
            .live_search(json!({
                "size": POLL_BATCH,
                "sort": [{field: {"order": "desc"}}],
                "query": {"exists": {"field": field}},
                "_source": false,
                "track_total_hits": false,
            }))
            .await?;
        let mut position = Position::default();
        if let Some(newest) = hits.first().map(sort_value) {
            position.at = Some(newest.clone());
            position.ids = hits
                .iter()
                .filter(|hit| sort_value(hit) == newest)
                .map(|hit| hit.item.id.clone())
                .collect();
        }
        Ok(position)
    }

    /// The documents of `query` new to `position`, oldest first, each with
    /// its value of the live field; moves it.
    async fn poll(
        &self,
        field: &str,
        query: &str,
        position: &mut Position,
    ) -> Result<Vec<(Value, Item)>, DatasourceError> {
        let mut items = Vec::new();
        for _ in 0..MAX_CALLS_PER_POLL {
            let mut body = self.search_body(query, Some(&position.maybe_new(field)));
            body.insert("size".into(), json!(POLL_BATCH));
            body.insert("sort".into(), json!([{field: {"order": "asc"}}]));
            body.insert("track_total_hits".into(), json!(false));
            let hits = self.live_search(Value::Object(body)).await?;
            let before = items.len();
            let count = hits.len();
            for hit in hits {
                let at = sort_value(&hit);
                if position.take(&at, &hit.item.id) {
                    items.push((at, hit.item));
                }
            }
            // A short page is the end; a full page of documents already
            // seen (more than a batch share one value) waits for the next poll.
            if count < POLL_BATCH || items.len() == before {
                break;
            }
        }
        Ok(items)
    }
}

#[async_trait]
impl Live for ElasticsearchDatasource {
    fn mode(&self) -> LiveMode {
        LiveMode::Poll {
            interval: self.live.as_ref().map_or(DEFAULT_INTERVAL, |l| l.interval),
        }
    }

    async fn search_live(
        &self,
        _: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<LiveCursor, DatasourceError> {
        let field = &self.live_options()?.field;
        let position = self.newest(field).await?;
        let seen = position.seen(field);
        self.search_as_of(query, Some(&seen), results).await?;
        Ok(position.cursor())
    }

    async fn changes(&self, watches: &mut [Watch]) -> Vec<Result<Vec<Item>, DatasourceError>> {
        let field = match self.live_options() {
            Ok(options) => &options.field,
            Err(error) => return watches.iter().map(|_| Err(error.clone())).collect(),
        };
        let polls = watches.iter_mut().map(|watch| async move {
            let mut position = Position::of(&watch.cursor);
            let items = self.poll(field, &watch.query, &mut position).await?;
            watch.cursor = position.cursor();
            Ok(items.into_iter().map(|(_, item)| item).collect())
        });
        join_all(polls).await
    }

    fn shared_polls(&self) -> Option<&dyn SharedPolls> {
        self.live.as_ref().map(|_| self as &dyn SharedPolls)
    }
}

#[async_trait]
impl SharedPolls for ElasticsearchDatasource {
    async fn poll_shared(
        &self,
        query: &str,
        cursor: Option<LiveCursor>,
    ) -> Result<(Vec<Value>, LiveCursor), DatasourceError> {
        let field = &self.live_options()?.field;
        let Some(cursor) = cursor else {
            return Ok((Vec::new(), self.newest(field).await?.cursor()));
        };
        let mut position = Position::of(&cursor);
        let polled = self.poll(field, query, &mut position).await?;
        let polled = polled
            .into_iter()
            .map(|(at, item)| json!({"at": at, "item": item}))
            .collect();
        Ok((polled, position.cursor()))
    }

    fn take_polled(&self, watch: &mut Watch, polled: &[Value]) -> Vec<Item> {
        let mut position = Position::of(&watch.cursor);
        let mut items = Vec::new();
        for document in polled {
            let Ok(item) = serde_json::from_value::<Item>(document["item"].clone()) else {
                continue;
            };
            if position.take(&document["at"], &item.id) {
                items.push(item);
            }
        }
        watch.cursor = position.cursor();
        items
    }
}

/// A hit's first sort value (the live field's), `null` when it has none.
fn sort_value(hit: &Hit) -> Value {
    hit.sort
        .as_ref()
        .and_then(|sort| sort.get(0))
        .cloned()
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_sharing_a_timestamp_are_taken_once_each() {
        let mut position = Position::default();
        assert!(position.take(&json!(5), "a"));
        assert!(position.take(&json!(5), "b"));
        assert!(!position.take(&json!(5), "a"));
        assert!(position.take(&json!(7), "c"));
        assert_eq!(position.ids, ["c"]);
        let again = Position::of(&position.cursor());
        assert_eq!(again.at, Some(json!(7)));
        assert_eq!(position.maybe_new("t"), json!({"range": {"t": {"gte": 7}}}));
    }
}
