//! Pages past the result window (`index.max_result_window`): walked through
//! a point in time (Elasticsearch 7.10+) or, failing that, a scroll, in
//! batches, each batch of the page pushed as it comes. The cursor is closed
//! from a `Drop` guard, so a canceled request leaves nothing open.

use elasticsearch::{
    ClearScrollParts, Elasticsearch, OpenPointInTimeParts, ScrollParts, SearchParts,
};
use serde_json::{json, Value};
use tributary_datasource::{DatasourceError, ErrorKind, Item, ResultSink, SearchQuery};

use super::ElasticsearchDatasource;

/// How long a point in time or scroll stays open between two batches.
const KEEP_ALIVE: &str = "1m";

impl ElasticsearchDatasource {
    /// A page past the result window: walks a point in time (or a scroll) in
    /// batches, skipping to `from`, and sends each batch of the page as it comes.
    pub(super) async fn search_deep(
        &self,
        query: &SearchQuery,
        as_of: Option<&Value>,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        let indices = self.indices();
        let opened = self
            .client
            .open_point_in_time(OpenPointInTimeParts::Index(&indices))
            .keep_alive(KEEP_ALIVE)
            .send()
            .await;
        let pit = match self.read(opened, "open a point in time").await {
            Ok(body) => body.get("id").and_then(Value::as_str).map(str::to_owned),
            Err(error) if error.kind == ErrorKind::Unavailable => return Err(error),
            Err(_) => None,
        };
        let mut cursor = match pit {
            Some(id) => Cursor::Pit {
                guard: PitGuard::new(self.client.clone(), id),
                after: None,
            },
            None => Cursor::Scroll { guard: None },
        };
        let end = query.from.saturating_add(query.size);
        let mut position = 0u64; // hits walked so far
        let mut total = None;
        while position < end {
            let skipping = position + self.scan_batch <= query.from;
            let mut body = self.search_body(&query.query, as_of);
            body.insert("size".into(), json!(self.scan_batch));
            if skipping {
                // Hits before `from` are only counted: no source, no highlights.
                body.insert("_source".into(), json!(false));
                body.remove("highlight");
            }
            if total.is_none() {
                body.insert("track_total_hits".into(), json!(true));
            } else {
                body.insert("track_total_hits".into(), json!(false));
            }
            let page = match &mut cursor {
                Cursor::Pit { guard, after } => {
                    body.insert(
                        "pit".into(),
                        json!({"id": guard.id, "keep_alive": KEEP_ALIVE}),
                    );
                    body.insert("sort".into(), json!([{"_shard_doc": "asc"}]));
                    if let Some(after) = after.take() {
                        body.insert("search_after".into(), after);
                    }
                    let response = self
                        .client
                        .search(SearchParts::None)
                        .body(Value::Object(body))
                        .send()
                        .await;
                    let page = self.read_page(response, "search").await?;
                    if let Some(id) = &page.pit_id {
                        guard.id = id.clone();
                    }
                    *after = page.hits.last().and_then(|hit| hit.sort.clone());
                    page
                }
                Cursor::Scroll { guard } => {
                    let response = match guard {
                        Some(guard) => {
                            self.client
                                .scroll(ScrollParts::None)
                                .body(json!({"scroll": KEEP_ALIVE, "scroll_id": guard.id}))
                                .send()
                                .await
                        }
                        None => {
                            body.insert("sort".into(), json!(["_doc"]));
                            self.client
                                .search(SearchParts::Index(&indices))
                                .scroll(KEEP_ALIVE)
                                .body(Value::Object(body))
                                .send()
                                .await
                        }
                    };
                    let page = self.read_page(response, "scroll").await?;
                    if let Some(id) = &page.scroll_id {
                        match guard {
                            Some(guard) => guard.id = id.clone(),
                            None => {
                                *guard = Some(ScrollGuard::new(self.client.clone(), id.clone()))
                            }
                        }
                    }
                    page
                }
            };
            let page_total = page.total.unwrap_or(0);
            let items = page.into_items();
            let count = items.len();
            if total.is_none() {
                total = Some(page_total);
                results.set_total(page_total);
            }
            if count == 0 {
                break;
            }
            // The part of this batch that falls inside `from..end`.
            let first = query.from.saturating_sub(position) as usize;
            let last = (end - position).min(count as u64) as usize;
            position += count as u64;
            if first < last && !skipping {
                let wanted: Vec<Item> = items.into_iter().take(last).skip(first).collect();
                // Stops here (closing the cursor) once the results are no longer wanted.
                results.push(wanted).await?;
            }
        }
        results.set_total(total.unwrap_or(0));
        Ok(())
    }
}

/// Where a deep page continues from.
enum Cursor {
    Pit {
        guard: PitGuard,
        after: Option<Value>,
    },
    Scroll {
        guard: Option<ScrollGuard>,
    },
}

/// Closes a point in time when the walk ends, however it ends (also on cancel).
struct PitGuard {
    client: Elasticsearch,
    id: String,
}

impl PitGuard {
    fn new(client: Elasticsearch, id: String) -> Self {
        PitGuard { client, id }
    }
}

impl Drop for PitGuard {
    fn drop(&mut self) {
        let (client, id) = (self.client.clone(), std::mem::take(&mut self.id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = client
                    .close_point_in_time()
                    .body(json!({"id": id}))
                    .send()
                    .await;
            });
        }
    }
}

/// Clears a scroll when the walk ends.
struct ScrollGuard {
    client: Elasticsearch,
    id: String,
}

impl ScrollGuard {
    fn new(client: Elasticsearch, id: String) -> Self {
        ScrollGuard { client, id }
    }
}

impl Drop for ScrollGuard {
    fn drop(&mut self) {
        let (client, id) = (self.client.clone(), std::mem::take(&mut self.id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = client
                    .clear_scroll(ClearScrollParts::None)
                    .body(json!({"scroll_id": [id]}))
                    .send()
                    .await;
            });
        }
    }
}
