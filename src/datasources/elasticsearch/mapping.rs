//! Reading `GET /{index}/_mapping` into the dotted field list of `FIELDS_RECEIVE`.
//!
//! Handles the 7.x and 8.x (typeless) shape `{"<index>":{"mappings":{"properties":…}}}`,
//! the older typed shape `{"<index>":{"mappings":{"_doc":{"properties":…}}}}`, and
//! a pattern matching several indices (their fields are merged).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use tributary_datasource::Field;

/// The fields of every index in a `_mapping` response, merged and sorted by path.
/// When indices disagree on a field's type, the first index (by name) wins.
pub fn fields_of(response: &Value) -> Vec<Field> {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    let Some(indices) = response.as_object() else {
        return Vec::new();
    };
    for index in indices.values() {
        let Some(mappings) = index.get("mappings").and_then(Value::as_object) else {
            continue;
        };
        for properties in properties_of(mappings) {
            let mut fields = Vec::new();
            collect(properties, "", &mut fields);
            for (path, kind) in fields {
                merged.entry(path).or_insert(kind);
            }
        }
    }
    merged
        .into_iter()
        .map(|(path, kind)| Field { path, kind })
        .collect()
}

/// The `properties` of a typeless mapping, or of each type of a typed one.
fn properties_of(mappings: &Map<String, Value>) -> Vec<&Map<String, Value>> {
    if let Some(properties) = mappings.get("properties").and_then(Value::as_object) {
        return vec![properties];
    }
    mappings
        .values()
        .filter_map(|typed| typed.get("properties").and_then(Value::as_object))
        .collect()
}

/// Walks `properties`, descending into `object` and `nested` fields. Multi-fields
/// (`title.keyword` under `title`'s `fields`) are left out: they index the same
/// value as their parent, which is the field results carry; queries may still use them.
fn collect(properties: &Map<String, Value>, prefix: &str, out: &mut Vec<(String, String)>) {
    for (name, definition) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let kind = definition.get("type").and_then(Value::as_str);
        match definition.get("properties").and_then(Value::as_object) {
            // `object` (often written without a type) and `nested` hold sub-fields.
            Some(children) => collect(children, &path, out),
            None => {
                if let Some(kind) = kind.filter(|k| *k != "object" && *k != "nested") {
                    out.push((path, kind.to_owned()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|f| (f.path.clone(), f.kind.clone()))
            .collect()
    }

    #[test]
    fn nested_objects_multi_fields_and_several_indices() {
        let response = json!({
            "people-2024": {"mappings": {"properties": {
                "name": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
                "address": {"properties": {"city": {"type": "keyword"}, "geo": {"type": "geo_point"}}},
                "contacts": {"type": "nested", "properties": {"email": {"type": "keyword"}}},
                "age": {"type": "long"}
            }}},
            "people-2025": {"mappings": {"properties": {
                "age": {"type": "integer"},
                "joined": {"type": "date"}
            }}}
        });
        assert_eq!(
            paths(&fields_of(&response)),
            [
                ("address.city", "keyword"),
                ("address.geo", "geo_point"),
                ("age", "long"),
                ("contacts.email", "keyword"),
                ("joined", "date"),
                ("name", "text"),
            ]
            .map(|(p, k)| (p.to_owned(), k.to_owned()))
        );
    }

    #[test]
    fn typed_mappings_of_older_clusters() {
        let response =
            json!({"old": {"mappings": {"_doc": {"properties": {"x": {"type": "keyword"}}}}}});
        assert_eq!(
            paths(&fields_of(&response)),
            [("x".to_owned(), "keyword".to_owned())]
        );
        assert!(fields_of(&json!({"empty": {"mappings": {}}})).is_empty());
    }
}
