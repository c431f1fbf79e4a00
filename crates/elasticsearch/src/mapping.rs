//! Reading `GET /{index}/_mapping` into the dotted field list of `FIELDS_RECEIVE`.
//!
//! Handles the 7.x and 8.x (typeless) shape `{"<index>":{"mappings":{"properties":…}}}`,
//! the older typed shape `{"<index>":{"mappings":{"_doc":{"properties":…}}}}`, and
//! a pattern matching several indices (their fields are merged).

use std::collections::BTreeMap;

use serde_json::Value;

use tributary_datasource::Field;
use tributary_query::Mapping;

/// The fields of every index in a `_mapping` response, merged and sorted by path.
/// When indices disagree on a field's type, the first index (by name) wins.
/// Each index's mapping is read as the `fixtures` datasource reads one:
/// objects and `nested` fields descend, multi-fields (`title.keyword`) are
/// folded into their parent, which is the field results carry (queries may
/// still use them).
pub fn fields_of(response: &Value) -> Vec<Field> {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    let Some(indices) = response.as_object() else {
        return Vec::new();
    };
    for index in indices.values() {
        let Some(mappings) = index.get("mappings").filter(|m| m.is_object()) else {
            continue;
        };
        let Ok(mapping) = Mapping::from_json(mappings) else {
            continue;
        };
        for field in mapping.listed() {
            merged
                .entry(field.path.clone())
                .or_insert_with(|| field.declared.clone());
        }
    }
    merged
        .into_iter()
        .map(|(path, kind)| Field { path, kind })
        .collect()
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
