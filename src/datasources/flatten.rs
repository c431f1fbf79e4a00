//! Turns nested JSON records into flat maps keyed by dotted paths, the shape
//! every datasource reports fields and results in: `{"user":{"name":"a"}}`
//! becomes `{"user.name":"a"}`. Arrays stay arrays; the values of objects
//! inside arrays are gathered per path (`[{"a":1},{"a":2}]` under `x` gives
//! `x.a: [1, 2]`), as Elasticsearch does.

use serde_json::{Map, Value};

/// Flattens one record.
pub fn flatten(record: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in record {
        flatten_into(&mut out, key, value);
    }
    out
}

/// Flattens one value found at `path` (its entries are `path` or start with `path.`).
pub fn flatten_value(path: &str, value: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    flatten_into(&mut out, path, value);
    out
}

fn flatten_into(out: &mut Map<String, Value>, path: &str, value: &Value) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                flatten_into(out, &format!("{path}.{key}"), child);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            // Gather each nested path's values into one array.
            let mut gathered = Map::new();
            for item in items {
                match item {
                    Value::Object(_) => {
                        let mut one = Map::new();
                        flatten_into(&mut one, path, item);
                        for (key, value) in one {
                            push_value(&mut gathered, key, value);
                        }
                    }
                    other => push_value(&mut gathered, path.to_owned(), other.clone()),
                }
            }
            for (key, value) in gathered {
                out.insert(key, value);
            }
        }
        other => {
            out.insert(path.to_owned(), other.clone());
        }
    }
}

fn push_value(gathered: &mut Map<String, Value>, key: String, value: Value) {
    let slot = gathered
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(values) = slot {
        match value {
            Value::Array(more) => values.extend(more),
            one => values.push(one),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_objects_become_dotted_paths_and_arrays_stay() {
        let record = json!({"text":"hi","user":{"name":"a","geo":{"lat":1}},"tags":["x","y"]});
        let flat = flatten(record.as_object().unwrap());
        assert_eq!(
            Value::Object(flat),
            json!({"text":"hi","user.name":"a","user.geo.lat":1,"tags":["x","y"]})
        );
    }

    #[test]
    fn objects_in_arrays_are_gathered_per_path() {
        let record = json!({"to":[{"name":"a","addr":"x"},{"name":"b","addr":"y"}]});
        let flat = flatten(record.as_object().unwrap());
        assert_eq!(
            Value::Object(flat),
            json!({"to.name":["a","b"],"to.addr":["x","y"]})
        );
    }
}
