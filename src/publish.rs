//! `POST /api/datasources/<id>/records`: records published to a datasource
//! (Marija's live feed). The body is one JSON object, an array of objects,
//! or NDJSON; the records are all added, or none. Live queries receive the
//! matching ones as soon as they are searchable.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::App;
use crate::datasources::{AppendError, Records};

/// Where a record came from in the body, to name it in an error.
enum Place {
    /// The n-th element (from 0) of a JSON array.
    Element(usize),
    /// A line of NDJSON (from 1).
    Line(usize),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Element(n) => write!(f, "element {n}"),
            Place::Line(n) => write!(f, "line {n}"),
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

pub async fn records(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    app: web::Data<App>,
) -> HttpResponse {
    let id = path.into_inner();
    let grant = match app.auth.check(&req) {
        Ok(grant) => grant,
        Err(refusal) => return error(refusal.status(), refusal.message()),
    };
    if app.auth.requires_token() && !grant.may_publish {
        return error(
            StatusCode::FORBIDDEN,
            "this token may not publish records (its `[auth.tokens.<name>]` table needs `publish = true`)",
        );
    }
    if !app.auth.requires_token() && !app.publish.enabled {
        return error(
            StatusCode::FORBIDDEN,
            "publishing is off on this server: set `[publish] enabled = true` (or use a token with `publish = true`)",
        );
    }
    let source = match app.federation.source_by_id(&id) {
        Some(source) if grant.caller.may_use(&id) => source,
        _ => return error(StatusCode::NOT_FOUND, format!("unknown datasource `{id}`")),
    };
    let (records, places) = match parse_body(&body) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if records.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the body holds no records");
    }
    // With several nodes the records also go to the others, through the
    // broker's history: refused while it cannot take them.
    let replicated = (app.broker.has_other_nodes()).then(|| records.clone());
    if replicated.is_some() && !app.broker.is_up() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker (Redis) is unreachable: records published now could not reach the other nodes; nothing was published, try again",
        );
    }
    match source.datasource.append(records).await {
        Ok(appended) => {
            if let Some(records) = replicated {
                let payload = bytes::Bytes::from(
                    serde_json::to_vec(&json!({"node": app.broker.node(), "records": records}))
                        .unwrap_or_default(),
                );
                if let Err(reason) = app.broker.append(&stream(&id), payload).await {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{reason}: the records were added on this node only"),
                    );
                }
            }
            app.metrics
                .published_records
                .with_label_values(&[&id])
                .inc_by(appended.records as u64);
            tracing::debug!(datasource = %id, records = appended.records, "records published");
            HttpResponse::Ok().json(json!({
                "datasource": id,
                "published": appended.records,
                "unindexed_fields": appended.unindexed_fields,
            }))
        }
        Err(AppendError::Invalid { record, message }) => {
            let at = places
                .get(record)
                .map_or_else(|| format!("record {record}"), ToString::to_string);
            error(
                StatusCode::BAD_REQUEST,
                format!("{at}: {message}; nothing was published"),
            )
        }
        Err(AppendError::Full { limit }) => error(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("datasource `{id}` holds as many records as it may ({limit}, its `max_records`); nothing was published"),
        ),
        Err(AppendError::NotSupported) => error(
            StatusCode::CONFLICT,
            format!("datasource `{id}` does not take published records (only `fixtures` datasources do)"),
        ),
        Err(AppendError::Failed(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "datasource `{id}`: {}; nothing was published",
                crate::datasources::redact_userinfo(&e.message)
            ),
        ),
    }
}

/// The history stream of a datasource's published records.
fn stream(datasource: &str) -> String {
    format!("records:{datasource}")
}

/// Adds the records published on other nodes (and, at start-up, those
/// still in the broker's history) to this node's datasources, so live
/// queries and searches on every node see them.
pub async fn replicate(app: std::sync::Arc<App>) {
    let sources = app.federation.sources();
    let streams = sources.iter().map(|s| stream(&s.info.id)).collect();
    let mut entries = app.broker.follow(streams);
    while let Some(first) = entries.recv().await {
        // What else has arrived is added with it: one index commit for many
        // batches when this node is behind (as after its start).
        let mut arrived = vec![first];
        while arrived.len() < 256 {
            match entries.try_recv() {
                Ok(entry) => arrived.push(entry),
                Err(_) => break,
            }
        }
        let mut by_datasource: Vec<(String, Records)> = Vec::new();
        for (stream, (offset, payload)) in arrived {
            #[derive(serde::Deserialize)]
            struct Batch {
                node: String,
                records: Records,
            }
            let Ok(batch) = serde_json::from_slice::<Batch>(&payload) else {
                tracing::warn!(%stream, %offset, "an unreadable entry in the history");
                continue;
            };
            if batch.node == app.broker.node() {
                continue;
            }
            let Some(id) = stream.strip_prefix("records:") else {
                continue;
            };
            match by_datasource.iter_mut().find(|(d, _)| d == id) {
                Some((_, records)) => records.extend(batch.records),
                None => by_datasource.push((id.to_owned(), batch.records)),
            }
        }
        for (id, records) in by_datasource {
            let Some(source) = app.federation.source_by_id(&id) else {
                continue;
            };
            let count = records.len();
            match source.datasource.append(records).await {
                Ok(_) => {
                    tracing::debug!(datasource = %id, records = count, "records from other nodes")
                }
                Err(error) => {
                    tracing::warn!(datasource = %id, %error, "records from other nodes could not be added")
                }
            }
        }
    }
}

/// Reads the records of a body: one object, an array of objects, or one
/// object per line. Errors name the line (or element) and the problem.
fn parse_body(body: &[u8]) -> Result<(Records, Vec<Place>), String> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = Lines::default().at(body, e.valid_up_to());
        format!("line {line}: the body is not UTF-8")
    })?;
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut records = Vec::new();
    let mut places = Vec::new();
    let mut lines = Lines::default();
    loop {
        let start = values.byte_offset();
        let value = match values.next() {
            None => break,
            Some(Ok(value)) => value,
            Some(Err(e)) => {
                // serde counts lines through the whole body.
                let line = match e.line() {
                    0 => lines.at(body, start),
                    line => line,
                };
                return Err(format!(
                    "line {line}: invalid JSON: {}",
                    without_position(&e)
                ));
            }
        };
        let line = lines.at(body, start + leading_whitespace(&text[start..]));
        match value {
            Value::Object(record) => {
                records.push(record);
                places.push(Place::Line(line));
            }
            Value::Array(elements) if records.is_empty() && places.is_empty() => {
                for (n, element) in elements.into_iter().enumerate() {
                    match element {
                        Value::Object(record) => {
                            records.push(record);
                            places.push(Place::Element(n));
                        }
                        _ => return Err(format!("element {n}: not a JSON object")),
                    }
                }
                if values.next().is_some() {
                    return Err("an array of records must be the whole body".into());
                }
                break;
            }
            _ => return Err(format!("line {line}: not a JSON object")),
        }
    }
    Ok((records, places))
}

/// Line numbers of increasing byte offsets, counted once through the body.
#[derive(Default)]
struct Lines {
    offset: usize,
    newlines: usize,
}

impl Lines {
    /// The line (from 1) of `offset`, which is not before the last one asked.
    fn at(&mut self, body: &[u8], offset: usize) -> usize {
        let offset = offset.min(body.len()).max(self.offset);
        self.newlines += body[self.offset..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = offset;
        self.newlines + 1
    }
}

fn leading_whitespace(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

/// serde's message without its "at line L column C" (the line is named first).
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(body: &str) -> Result<Vec<String>, String> {
        parse_body(body.as_bytes())
            .map(|(_, places)| places.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn bodies_of_every_shape_name_their_records() {
        assert_eq!(lines(r#"{"a":1}"#).unwrap(), ["line 1"]);
        assert_eq!(
            lines("{\"a\":1}\n\n{\"a\":2}\n").unwrap(),
            ["line 1", "line 3"]
        );
        assert_eq!(
            lines(r#"[{"a":1},{"a":2}]"#).unwrap(),
            ["element 0", "element 1"]
        );
        assert_eq!(lines("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn bad_bodies_name_the_line_and_the_problem() {
        // Where the JSON broke: the end of the body, after line 2.
        let error = lines("{\"a\":1}\n{\"a\":\n").unwrap_err();
        assert_eq!(error, "line 3: invalid JSON: EOF while parsing a value");
        let error = lines("{\"a\":1}\n42\n").unwrap_err();
        assert_eq!(error, "line 2: not a JSON object");
        let error = lines(r#"[{"a":1}, 3]"#).unwrap_err();
        assert_eq!(error, "element 1: not a JSON object");
        let error = lines("{\"a\":1}\n{\"b\" 2}").unwrap_err();
        assert!(error.starts_with("line 2: invalid JSON"), "{error}");
        let error = lines("{\"a\":1}\n\n\n{\"b\":\n\n 2,}").unwrap_err();
        assert!(error.starts_with("line 6: invalid JSON"), "{error}");
    }
}
