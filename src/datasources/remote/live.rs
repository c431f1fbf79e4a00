//! Records services publish to a remote datasource, held just long enough
//! for live queries to match them.
//!
//! The service remains the source of truth for searches; published records
//! only announce what is new. They are indexed in memory (the fixtures
//! adapter's index, under the fields the service declared, so queries match
//! them as the embedded datasets do) in a buffer of [`BUFFER_RECORDS`]; a
//! full buffer becomes the previous one and a new one starts, so memory
//! stays bounded and a live query one buffer behind still gets everything.
//! A cursor is `{"g": buffer generation, "r": rows seen in it}`.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::watch;
use tributary_query::Mapping;

use super::super::*;
use crate::datasources::embedded::EmbeddedDatasource;
use crate::datasources::Publish;

/// Published records a buffer holds before the next one starts.
pub const BUFFER_RECORDS: usize = 10_000;

struct Buffers {
    generation: u64,
    current: Arc<EmbeddedDatasource>,
    previous: Option<Arc<EmbeddedDatasource>>,
}

pub struct Announced {
    id: String,
    mapping: Mapping,
    buffers: Mutex<Buffers>,
    /// Bumped after each publish: live feeds wake up.
    announce: watch::Sender<u64>,
}

impl Announced {
    pub fn new(id: &str, declared: &[Field]) -> Result<Announced, String> {
        let mapping = mapping(declared);
        Ok(Announced {
            id: id.to_owned(),
            buffers: Mutex::new(Buffers {
                generation: 0,
                current: Arc::new(empty(id, &mapping)?),
                previous: None,
            }),
            mapping,
            announce: watch::channel(0).0,
        })
    }

    fn buffers(&self) -> std::sync::MutexGuard<'_, Buffers> {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mode(&self) -> LiveMode {
        LiveMode::Push(self.announce.subscribe())
    }

    /// Where a live query started now stands.
    pub fn position(&self) -> LiveCursor {
        let buffers = self.buffers();
        cursor(buffers.generation, &buffers.current.live_position())
    }

    /// Checks records as [`Announced::publish`] would, adding nothing.
    pub fn check(&self, records: &Records) -> Result<Appended, AppendError> {
        if records.len() > BUFFER_RECORDS {
            return Err(AppendError::Full {
                limit: BUFFER_RECORDS,
            });
        }
        let current = Arc::clone(&self.buffers().current);
        // A full buffer is replaced, not refused: only the records count.
        current
            .check_append(records)
            .or_else(|refused| match refused {
                AppendError::Full { .. } => Ok(Appended {
                    records: records.len(),
                    unindexed_fields: Vec::new(),
                    replaced: None,
                }),
                other => Err(other),
            })
    }

    pub async fn publish(&self, records: Records) -> Result<Appended, AppendError> {
        self.publish_at(records, Vec::new()).await
    }

    /// [`Announced::publish`], the records being `publications` of the
    /// datasource's stream (their positions come with them to live queries).
    pub async fn publish_at(
        &self,
        records: Records,
        publications: Vec<Publication>,
    ) -> Result<Appended, AppendError> {
        if records.len() > BUFFER_RECORDS {
            return Err(AppendError::Full {
                limit: BUFFER_RECORDS,
            });
        }
        let buffer = {
            let mut buffers = self.buffers();
            if buffers.current.records() + records.len() > BUFFER_RECORDS {
                let next = empty(&self.id, &self.mapping)
                    .map_err(|e| AppendError::Failed(DatasourceError::unavailable(e)))?;
                let next = Arc::new(next);
                buffers.previous = Some(std::mem::replace(&mut buffers.current, next));
                buffers.generation += 1;
            }
            Arc::clone(&buffers.current)
        };
        let appended = buffer.append_published(records, publications).await?;
        self.announce.send_modify(|n| *n += 1);
        Ok(appended)
    }

    /// New matching records for each watch: from the previous buffer first
    /// for a watch that started there, then from the current one.
    pub async fn changes(&self, watches: &mut [Watch]) -> Vec<Result<Vec<Item>, DatasourceError>> {
        let (generation, current, previous) = {
            let buffers = self.buffers();
            (
                buffers.generation,
                Arc::clone(&buffers.current),
                buffers.previous.clone(),
            )
        };
        let start = |watch: &Watch, rows: u64| Watch {
            query: watch.query.clone(),
            cursor: LiveCursor(rows.into()),
        };
        let mut in_current = Vec::with_capacity(watches.len());
        let mut in_previous = Vec::new();
        let mut previous_of = Vec::new();
        for (i, watch) in watches.iter().enumerate() {
            let (g, rows) = read(&watch.cursor);
            if g == generation {
                in_current.push(start(watch, rows));
            } else {
                // One buffer behind: the rest of it first. Further behind
                // (or unreadable): only the current buffer is left.
                if g + 1 == generation && previous.is_some() {
                    in_previous.push(start(watch, rows));
                    previous_of.push(i);
                }
                in_current.push(start(watch, 0));
            }
        }
        let mut answers = match &previous {
            Some(previous) if !in_previous.is_empty() => {
                let mut answers: Vec<Result<Vec<Item>, DatasourceError>> =
                    watches.iter().map(|_| Ok(Vec::new())).collect();
                for (i, answer) in previous_of
                    .iter()
                    .zip(previous.changes(&mut in_previous).await)
                {
                    answers[*i] = answer;
                }
                answers
            }
            _ => watches.iter().map(|_| Ok(Vec::new())).collect(),
        };
        let newer = current.changes(&mut in_current).await;
        for (((answer, newer), watch), moved) in answers
            .iter_mut()
            .zip(newer)
            .zip(watches.iter_mut())
            .zip(in_current)
        {
            match (answer, newer) {
                (Ok(items), Ok(more)) => items.extend(more),
                (answer @ Ok(_), Err(error)) => *answer = Err(error),
                (Err(_), _) => {}
            }
            watch.cursor = cursor(generation, &moved.cursor);
        }
        answers
    }
}

impl Announced {
    /// The last publication a cursor includes (known while its buffer is).
    pub fn position_of(&self, cursor: &LiveCursor) -> Option<Position> {
        let (g, rows) = read(cursor);
        let buffer = self.buffer(g)?;
        Live::position_of(&*buffer, &LiveCursor(rows.into()))
    }

    /// The cursor right after publication `position`, if a buffer holds it.
    pub fn cursor_after(&self, position: &Position) -> Option<LiveCursor> {
        let generation = self.buffers().generation;
        for g in [generation, generation.wrapping_sub(1)] {
            if let Some(buffer) = self.buffer(g) {
                if let Some(inner) = Live::cursor_after(&*buffer, position) {
                    return Some(cursor(g, &inner));
                }
            }
        }
        None
    }

    fn buffer(&self, generation: u64) -> Option<Arc<EmbeddedDatasource>> {
        let buffers = self.buffers();
        if generation == buffers.generation {
            Some(Arc::clone(&buffers.current))
        } else if generation.wrapping_add(1) == buffers.generation {
            buffers.previous.clone()
        } else {
            None
        }
    }
}

fn empty(id: &str, mapping: &Mapping) -> Result<EmbeddedDatasource, String> {
    EmbeddedDatasource::from_records_with_mapping(id, Vec::new(), mapping.clone())
}

/// The declared fields as a mapping; undeclared fields are inferred from
/// the first record that has them.
fn mapping(declared: &[Field]) -> Mapping {
    let mut mapping = Mapping::default();
    for field in declared {
        // `x.keyword` of a text field `x` is its multi-field, not a field.
        let multi = field
            .path
            .strip_suffix(".keyword")
            .is_some_and(|parent| declared.iter().any(|f| f.path == parent));
        if !multi {
            // A type the mapping does not know is inferred instead.
            let _ = mapping.set_type(&field.path, &field.kind);
        }
    }
    mapping
}

fn cursor(generation: u64, inner: &LiveCursor) -> LiveCursor {
    LiveCursor(json!({"g": generation, "r": inner.0}))
}

fn read(cursor: &LiveCursor) -> (u64, u64) {
    let number = |key: &str| cursor.0.get(key).and_then(Value::as_u64);
    match (number("g"), number("r")) {
        (Some(g), Some(r)) => (g, r),
        _ => (u64::MAX, 0),
    }
}
