//! Expansions with Elasticsearch's own aggregations: under a `sampler` (the
//! best-matching `sample_size` documents per shard), a `terms` (or, in
//! `significant` mode, `significant_terms`, JLH) aggregation per field for
//! the new values, and per selected value a `filter` with the same
//! aggregations for the connections. One `_search`, `size: 0`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use tributary_datasource::{
    Connection, DatasourceError, ExpandMode, ExpandQuery, Expansion, FieldList, FieldValue,
    Selected, Subsequence, Vertex,
};

use super::ElasticsearchDatasource;

/// Documents per shard the aggregations look at, by default.
pub const DEFAULT_SAMPLE_SIZE: u64 = 5_000;

impl ElasticsearchDatasource {
    pub(super) async fn expand_with_aggregations(
        &self,
        query: &ExpandQuery,
        fields: &FieldList,
    ) -> Result<Expansion, DatasourceError> {
        let body = expand_body(query, fields, self.sample_size);
        let response = self.send_search(body).await;
        let answer = self.read(response, "expand").await?;
        Ok(read_expansion(query, &answer, self.sample_size))
    }

    pub(super) async fn values_like_by_terms(
        &self,
        field: &str,
        fields: &FieldList,
        hint: &Subsequence,
        limit: usize,
    ) -> Result<Vec<String>, DatasourceError> {
        let body = values_like_body(field, fields, hint, limit);
        let response = self.send_search(body).await;
        let answer = self.read(response, "list values").await?;
        Ok(read_values_like(&answer))
    }
}

/// The field to aggregate on: a `text` field's `keyword` sub-field (the
/// convention of Elasticsearch's dynamic mapping), else the field itself.
fn aggregatable(field: &str, fields: &FieldList) -> String {
    let text = fields
        .fields
        .iter()
        .any(|f| f.path == field && f.kind == "text");
    if text {
        format!("{field}.keyword")
    } else {
        field.to_owned()
    }
}

/// Records holding `selected` values: a `term` query per field (on the
/// aggregatable field, so values match exactly), any of them.
fn holding(pairs: &[(String, String)]) -> Value {
    let should: Vec<Value> = pairs
        .iter()
        .map(|(field, value)| json!({"term": {field: {"value": value}}}))
        .collect();
    json!({"bool": {"should": should, "minimum_should_match": 1}})
}

/// Where and as what a selected value is looked for: each of its forms in
/// each of its fields.
fn pairs_of(selected: &Selected, fields: &FieldList) -> Vec<(String, String)> {
    selected
        .fields
        .iter()
        .flat_map(|f| {
            let field = aggregatable(f, fields);
            selected
                .forms
                .iter()
                .map(move |form| (field.clone(), form.clone()))
        })
        .collect()
}

/// The `_search` body listing up to `limit` values of `field` that hold
/// `hint`'s characters in order: a `terms` aggregation whose `include` is
/// that regular expression.
pub fn values_like_body(
    field: &str,
    fields: &FieldList,
    hint: &Subsequence,
    limit: usize,
) -> Value {
    let field = aggregatable(field, fields);
    json!({
        "size": 0,
        "query": {"exists": {"field": field}},
        "aggs": {"values": {"terms": {"field": field, "size": limit, "include": hint.lucene_regexp()}}},
    })
}

/// The values in the answer to [`values_like_body`].
pub fn read_values_like(answer: &Value) -> Vec<String> {
    answer["aggregations"]["values"]["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| match &b["key"] {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(
                b["key_as_string"]
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned),
            ),
        })
        .collect()
}

/// The `_search` body of one expansion.
pub fn expand_body(query: &ExpandQuery, fields: &FieldList, sample_size: u64) -> Value {
    let kind = match query.mode {
        ExpandMode::Count => "terms",
        ExpandMode::Significant => "significant_terms",
    };
    // Per field: the values not to return (excluded, or selected themselves).
    let per_field = |selected_too: bool| -> Map<String, Value> {
        let mut aggs = Map::new();
        for (i, field) in query.fields.iter().enumerate() {
            let mut exclude: BTreeSet<&str> = query
                .exclude
                .iter()
                .filter(|v| &v.field == field)
                .map(|v| v.value.as_str())
                .collect();
            if selected_too {
                for s in &query.selected {
                    if s.fields.contains(field) {
                        exclude.insert(s.value.value.as_str());
                        exclude.extend(s.forms.iter().map(String::as_str));
                    }
                }
            }
            let mut spec = json!({"field": aggregatable(field, fields), "size": query.size});
            if !exclude.is_empty() {
                spec["exclude"] = json!(exclude);
            }
            aggs.insert(format!("f{i}"), json!({ kind: spec }));
        }
        aggs
    };
    let mut inner = per_field(true);
    // How many distinct values each field holds in the sample (approximate,
    // as Elasticsearch's cardinality is): the "of M" of "10 of M".
    for (i, field) in query.fields.iter().enumerate() {
        inner.insert(
            format!("c{i}"),
            json!({"cardinality": {"field": aggregatable(field, fields)}}),
        );
    }
    for (j, selected) in query.selected.iter().enumerate() {
        let pairs = pairs_of(selected, fields);
        inner.insert(
            format!("s{j}"),
            json!({"filter": holding(&pairs), "aggs": per_field(true)}),
        );
    }
    let all: Vec<(String, String)> = query
        .selected
        .iter()
        .flat_map(|s| pairs_of(s, fields))
        .collect();
    json!({
        "size": 0,
        "track_total_hits": true,
        "query": holding(&all),
        "aggs": {"sample": {"sampler": {"shard_size": sample_size}, "aggs": inner}},
    })
}

/// Reads the answer to [`expand_body`].
pub fn read_expansion(query: &ExpandQuery, answer: &Value, sample_size: u64) -> Expansion {
    let sample = &answer["aggregations"]["sample"];
    let buckets = |at: &Value, i: usize| -> Vec<(String, u64, f64)> {
        at[format!("f{i}")]["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| {
                let key = match &b["key"] {
                    Value::String(s) => s.clone(),
                    Value::Null => return None,
                    other => b["key_as_string"]
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_owned),
                };
                let count = b["doc_count"].as_u64()?;
                Some((key, count, b["score"].as_f64().unwrap_or(count as f64)))
            })
            .collect()
    };
    let mut vertices = Vec::new();
    let mut kept = BTreeSet::new();
    let mut available = BTreeMap::new();
    for (i, field) in query.fields.iter().enumerate() {
        let found = buckets(sample, i);
        if let Some(distinct) = sample[format!("c{i}")]["value"].as_u64() {
            // Less the values that are not new: excluded, or the selection.
            let not_new = query.exclude.iter().filter(|v| &v.field == field).count()
                + query
                    .selected
                    .iter()
                    .filter(|s| s.fields.contains(field))
                    .count();
            let new = distinct.saturating_sub(not_new as u64);
            available.insert(field.clone(), new.max(found.len() as u64));
        }
        for (value, doc_count, weight) in found {
            kept.insert(FieldValue::new(field.clone(), value.clone()));
            vertices.push(Vertex {
                field: field.clone(),
                value,
                doc_count,
                weight,
            });
        }
    }
    let mut connections: BTreeMap<(FieldValue, FieldValue), (u64, Option<String>)> =
        BTreeMap::new();
    for (j, selected) in query.selected.iter().enumerate() {
        let within = &sample[format!("s{j}")];
        for (i, field) in query.fields.iter().enumerate() {
            for (value, doc_count, _) in buckets(within, i) {
                let to = FieldValue::new(field.clone(), value);
                if kept.contains(&to) {
                    connections.insert(
                        (selected.value.clone(), to),
                        (doc_count, selected.via.clone()),
                    );
                }
            }
        }
    }
    let total = answer["hits"]["total"]["value"].as_u64().unwrap_or(0);
    let looked_at = sample["doc_count"].as_u64().unwrap_or(total);
    let method = match query.mode {
        ExpandMode::Count => "terms",
        ExpandMode::Significant => "significant_terms (JLH)",
    };
    Expansion {
        vertices,
        connections: connections
            .into_iter()
            .map(|((from, to), (doc_count, via))| Connection {
                from,
                to,
                doc_count,
                via,
            })
            .collect(),
        sampled: (looked_at < total).then_some(looked_at),
        method: format!(
            "{method} under a sampler of {sample_size} documents per shard: {looked_at} of {total} matching documents"
        ),
        available,
    }
}
