//! Turns nested JSON records into flat maps keyed by dotted paths, the shape
//! every datasource reports fields and results in: `{"user":{"name":"a"}}`
//! becomes `{"user.name":"a"}`. Arrays stay arrays; the values of objects
//! inside arrays are gathered per path (`[{"a":1},{"a":2}]` under `x` gives
//! `x.a: [1, 2]`), as Elasticsearch does.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
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

/// A JSON object flattened while it is parsed, written straight as JSON
/// text: values are copied as written (no `Value` tree, no map, no
/// re-encoding); only a list holding objects, whose values are gathered
/// per path, takes the [`flatten_value`] route. Used where records arrive
/// as JSON text (Elasticsearch's `_source`, PostgreSQL's `to_jsonb`).
pub struct Flattened {
    /// `{"path":value,…`, the closing brace added by [`Flattened::finish`].
    out: String,
    first: bool,
}

impl Default for Flattened {
    fn default() -> Self {
        Flattened {
            out: String::from("{"),
            first: true,
        }
    }
}

/// Which flattened paths to keep.
type Keep<'k> = &'k dyn Fn(&str) -> bool;

impl Flattened {
    /// Flattens the object `text` (anything else has no fields), keeping
    /// the paths `keep` accepts.
    pub fn from_text(text: &str, keep: Keep<'_>) -> Result<Flattened, serde_json::Error> {
        let mut flattened = Flattened::with_capacity(text.len() + 16);
        let mut prefix = String::new();
        let mut deserializer = serde_json::Deserializer::from_str(text);
        deserializer.deserialize_any(FlatField {
            prefix: &mut prefix,
            out: &mut flattened,
            keep: Some(keep),
        })?;
        deserializer.end()?;
        Ok(flattened)
    }

    fn with_capacity(capacity: usize) -> Flattened {
        let mut out = String::with_capacity(capacity);
        out.push('{');
        Flattened { out, first: true }
    }

    /// Adds `"path":value`, the value already encoded as JSON.
    pub fn push(&mut self, path: &str, encoded: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_json_string(&mut self.out, path);
        self.out.push(':');
        self.out.push_str(encoded);
    }

    /// The fields as one JSON object.
    pub fn finish(mut self) -> Result<std::sync::Arc<RawValue>, serde_json::Error> {
        self.out.push('}');
        RawValue::from_string(self.out).map(Into::into)
    }
}

/// Flattens while the enclosing document is parsed (keeping every path).
impl<'de> Deserialize<'de> for Flattened {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut flattened = Flattened::with_capacity(512);
        let mut prefix = String::new();
        deserializer.deserialize_any(FlatField {
            prefix: &mut prefix,
            out: &mut flattened,
            keep: None,
        })?;
        Ok(flattened)
    }
}

fn push_json_string(out: &mut String, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        // Nothing to escape (the usual field name).
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else if let Ok(encoded) = serde_json::to_string(text) {
        // A `str`'s serialisation cannot fail.
        out.push_str(&encoded);
    }
}

/// The object at `prefix` (the document, or an object inside it): its
/// fields are written, objects descended into.
struct FlatField<'s, 'k> {
    prefix: &'s mut String,
    out: &'s mut Flattened,
    keep: Option<Keep<'k>>,
}

impl FlatField<'_, '_> {
    fn push(&mut self, path: &str, encoded: &str) {
        if self.keep.is_none_or(|keep| keep(path)) {
            self.out.push(path, encoded);
        }
    }
}

impl<'de> Visitor<'de> for FlatField<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<M: MapAccess<'de>>(mut self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let mark = self.prefix.len();
            if mark > 0 {
                self.prefix.push('.');
            }
            self.prefix.push_str(&key);
            let value: &'de RawValue = map.next_value()?;
            match value.get().as_bytes().first() {
                Some(b'{') => {
                    let mut inner = serde_json::Deserializer::from_str(value.get());
                    inner
                        .deserialize_map(FlatField {
                            prefix: self.prefix,
                            out: self.out,
                            keep: self.keep,
                        })
                        .map_err(serde::de::Error::custom)?;
                }
                Some(b'[') if holds_objects(value).map_err(serde::de::Error::custom)? => {
                    // Values of objects in a list are gathered per path.
                    let list: Value =
                        serde_json::from_str(value.get()).map_err(serde::de::Error::custom)?;
                    for (path, value) in flatten_value(self.prefix, &list) {
                        self.push(&path, &value.to_string());
                    }
                }
                _ => {
                    let path = std::mem::take(self.prefix);
                    self.push(&path, value.get());
                    *self.prefix = path;
                }
            }
            self.prefix.truncate(mark);
        }
        Ok(())
    }

    // A document that is not an object has no fields.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

fn holds_objects(list: &RawValue) -> Result<bool, serde_json::Error> {
    // No `{` anywhere: no object (the usual list of names or tags).
    if !list.get().contains('{') {
        return Ok(false);
    }
    let items: Vec<&RawValue> = serde_json::from_str(list.get())?;
    Ok(items
        .iter()
        .any(|item| item.get().as_bytes().first() == Some(&b'{')))
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

    #[test]
    fn flattened_from_text_keeps_what_it_is_told() {
        let text = r#"{"a": {"b": 1, "c": [1, 2]}, "d": [{"e": "x"}, {"e": "y", "f": true}], "g": "h\u00e9"}"#;
        let all = Flattened::from_text(text, &|_| true)
            .unwrap()
            .finish()
            .unwrap();
        let parsed: Map<String, Value> = serde_json::from_str(all.get()).unwrap();
        let source: Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(parsed, flatten(&source));
        let some = Flattened::from_text(text, &|path| path.starts_with("d.") || path == "g")
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(
            some.get(),
            r#"{"d.e":["x","y"],"d.f":[true],"g":"h\u00e9"}"#
        );
    }
}
