//! `POST /api/datasources/<id>/records`: records published to a datasource
//! (Marija's live feed). The body is one JSON object, an array of objects,
//! or NDJSON; the records are all added, or none. Live queries receive the
//! matching ones as soon as they are searchable.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::App;
use crate::datasources::{AppendError, Records};
use crate::live::publishing::{Refused, RETRY_AFTER_SECONDS};

/// Where a record came from in the body, to name it in an error.
#[derive(Debug)]
pub enum Place {
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

/// An error answered before the body was read: the connection closes
/// after it, so an unread body is never taken as the next request.
fn refuse_unread(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .force_close()
        .json(json!({ "error": message.into() }))
}

pub async fn records(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    app: web::Data<App>,
) -> HttpResponse {
    let id = path.into_inner();
    // Who may publish, and where, is settled from the headers alone: no
    // byte of the body is read for a caller who may not publish.
    let grant = match app.auth.check(&req) {
        Ok(grant) => grant,
        Err(refusal) => return refuse_unread(refusal.status(), refusal.message()),
    };
    if app.auth.requires_token() && !grant.may_publish {
        return refuse_unread(
            StatusCode::FORBIDDEN,
            "this token may not publish records (its `[auth.tokens.<name>]` table needs `publish = true`)",
        );
    }
    if !app.auth.requires_token() && !app.publish.enabled {
        return refuse_unread(
            StatusCode::FORBIDDEN,
            "publishing is off on this server: set `[publish] enabled = true` (or use a token with `publish = true`)",
        );
    }
    let source = match app.federation.source_by_id(&id) {
        Some(source) if grant.caller.may_use(&id) => source,
        _ => return refuse_unread(StatusCode::NOT_FOUND, format!("unknown datasource `{id}`")),
    };
    let body = match read_body(&req, payload, &app).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    // Parsing a large body is CPU work: on the blocking pool, never on the
    // connection's worker.
    let budget = app
        .publish
        .max_body_bytes
        .saturating_mul(MAX_PARSE_AMPLIFICATION);
    let parsed = tokio::task::spawn_blocking(move || parse_body(&body, budget)).await;
    let (records, places) = match parsed {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the body could not be read; nothing was published",
            )
        }
    };
    if records.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the body holds no records");
    }
    let published = match app.publishing.publish(&source, records).await {
        Ok(published) => published,
        Err(refused) => return refused_response(&id, refused, &places),
    };
    let status = if published.searchable {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut answer = json!({
        "datasource": id,
        "published": published.records,
        "unindexed_fields": published.unindexed_fields,
        "offset": published.position.offset,
        "epoch": published.position.epoch,
        "searchable": published.searchable,
    });
    if let Some(replaced) = published.replaced {
        answer["replaced"] = json!(replaced);
    }
    HttpResponse::build(status).json(answer)
}

/// The body of a publish, read within `publish.body_timeout` and
/// `publish.max_body_bytes`, while the upload holds one of the server's
/// `max_connections` places (a stalled upload counts like any connection).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    app: &App,
) -> Result<web::Bytes, HttpResponse> {
    use futures_util::StreamExt;
    let limit = app.publish.max_body_bytes;
    let too_large = || {
        refuse_unread(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is over {limit} bytes (`publish.max_body_bytes`); nothing was published"
            ),
        )
    };
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let Some(_place) = crate::tcp::ConnectionSlot::acquire(
        &app.connections,
        app.limits.max_connections,
        &app.metrics,
    ) else {
        return Err(HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .force_close()
            .insert_header((actix_web::http::header::RETRY_AFTER, "5"))
            .json(
                json!({"error": "the server holds as many connections as it may; try again later"}),
            ));
    };
    let timeout = app.publish.body_timeout;
    let capacity = announced.map_or(0, |length| length as usize).min(limit);
    let read = async {
        let mut body = web::BytesMut::with_capacity(capacity);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                refuse_unread(
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {e}; nothing was published"),
                )
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(read) => read,
        Err(_) => {
            app.metrics.refused("publish.body_timeout");
            Err(refuse_unread(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s (`publish.body_timeout`); nothing was published",
                    timeout.as_secs_f64()
                ),
            ))
        }
    }
}

/// The answer to records that were refused: nothing was published.
fn refused_response(id: &str, refused: Refused, places: &[Place]) -> HttpResponse {
    let response = match refused.error {
        AppendError::Invalid { record, message } => {
            let at = places
                .get(record)
                .map_or_else(|| format!("record {record}"), ToString::to_string);
            error(
                StatusCode::BAD_REQUEST,
                format!("{at}: {message}; nothing was published"),
            )
        }
        AppendError::Full { limit } => error(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("datasource `{id}` has no room for these records: it may hold {limit} (its `max_records`); nothing was published"),
        ),
        AppendError::NotSupported => error(
            StatusCode::CONFLICT,
            format!("datasource `{id}` does not take published records (only `embedded` datasources and remote ones do)"),
        ),
        AppendError::Failed(e) => {
            let outcome = if refused.maybe_kept {
                "they may have been kept all the same: publish them again with the same ids (a record whose id is held is replaced, never doubled)"
            } else {
                "nothing was published"
            };
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "datasource `{id}`: {}; {outcome}",
                    crate::datasources::redact_userinfo(&e.message)
                ),
            );
            if refused.retry {
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from(RETRY_AFTER_SECONDS),
                );
            }
            response
        }
    };
    response
}

/// What parsing a body may allocate, as a multiple of the largest body
/// (`publish.max_body_bytes`): records of a few bytes each (`{}` lines)
/// cost many times their text once parsed.
const MAX_PARSE_AMPLIFICATION: usize = 8;
/// What one JSON value costs parsed (its `Value`, its entry in a map or an
/// array), on top of its text; a member counts twice (its `:` and `,`).
const PARSED_VALUE_BYTES: usize = 48;

/// The memory parsing `body` would take, about: its text, and a parsed
/// value for every object, array, member and line the body opens, counted
/// outside strings in one pass before anything is allocated.
fn parse_cost(body: &[u8]) -> usize {
    let mut values = 1usize;
    let (mut in_string, mut escaped) = (false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' | b',' | b':' | b'\n' => values += 1,
            _ => {}
        }
    }
    body.len()
        .saturating_add(values.saturating_mul(PARSED_VALUE_BYTES))
}

/// Reads the records of a body: one object, an array of objects, or one
/// object per line. Errors name the line (or element) and the problem.
/// A body whose parsed form would take more than `budget` bytes is refused
/// before parsing.
pub fn parse_body(body: &[u8], budget: usize) -> Result<(Records, Vec<Place>), String> {
    let cost = parse_cost(body);
    if cost > budget {
        return Err(format!(
            "the body holds too many small values for its size: parsed, its {} bytes would take about {} MiB, more than {} MiB ({MAX_PARSE_AMPLIFICATION} times `publish.max_body_bytes`); send fewer, larger records per request; nothing was published",
            body.len(),
            cost >> 20,
            budget >> 20
        ));
    }
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
        parse_body(body.as_bytes(), 1 << 20)
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
    fn bodies_that_parse_into_far_more_than_themselves_are_refused_first() {
        let tiny = "{}\n".repeat(100_000);
        let error = parse_body(tiny.as_bytes(), 1 << 20).unwrap_err();
        assert!(error.contains("too many small values"), "{error}");
        // Strings full of structure cost their text only.
        let one = format!("{{\"text\": \"{}\"}}", "{[,:".repeat(50_000));
        assert!(parse_cost(one.as_bytes()) < one.len() + 1000);
        assert_eq!(parse_body(one.as_bytes(), 1 << 20).unwrap().0.len(), 1);
        // Escaped quotes do not end a string.
        assert!(parse_cost(br#"{"a": "\",,,,,,"}"#) < 20 + 4 * PARSED_VALUE_BYTES);
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
