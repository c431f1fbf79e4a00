//! `EXPAND_REQUEST`: from selected values, through every datasource and the
//! links between their fields, to the values next to them.
//!
//! For each datasource: the selected values are looked for in the field
//! they came from (where the datasource has it) and in every field of this
//! datasource linked to it (`[links.*]`); the adapter counts with its own
//! aggregation ([`Datasource::expand`]) or, without one, the server
//! searches a bounded sample of the matching records and counts that.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use crate::config::LinkSettings;
use crate::datasources::{
    count_expansion, BatchTarget, Datasource, DatasourceError, ExpandQuery, Expansion, FieldValue,
    Item, RequestContext, ResultSink, SearchQuery, Selected, SinkClosed,
};
use crate::request::ExpandPlan;

/// Records the server searches and counts for a datasource without an
/// aggregation of its own.
pub const SAMPLE_SIZE: u64 = 1_000;

/// The links of the configuration, as the expansion uses them.
#[derive(Debug, Clone, Default)]
pub struct Links {
    links: Vec<(String, LinkSettings)>,
}

impl Links {
    pub fn new(links: &BTreeMap<String, LinkSettings>) -> Links {
        Links {
            links: links
                .iter()
                .map(|(name, link)| (name.clone(), link.clone()))
                .collect(),
        }
    }

    /// Where `datasource` (with `fields`) holds values like `value`, and
    /// whether they compare lowercased; `None` when it holds none.
    pub fn resolve(
        &self,
        datasource: &str,
        fields: &BTreeSet<String>,
        value: &FieldValue,
    ) -> Option<Selected> {
        let mut found: Vec<String> = Vec::new();
        if fields.contains(&value.field) {
            found.push(value.field.clone());
        }
        let mut lowercase = false;
        for (_, link) in &self.links {
            // A link carries the value when any of its fields has the value's field name.
            if !link.members().any(|(_, field)| field == value.field) {
                continue;
            }
            lowercase |= link.lowercase;
            for (id, field) in link.members() {
                if id == datasource && fields.contains(field) && !found.iter().any(|f| f == field) {
                    found.push(field.to_owned());
                }
            }
        }
        (!found.is_empty()).then(|| Selected {
            value: value.clone(),
            fields: found,
            lowercase,
        })
    }

    /// The expansion `plan` asks of `datasource` (with `fields`): the
    /// selected values it holds, and the fields of new values (asked for,
    /// or by default the fields holding the selection).
    pub fn query_for(
        &self,
        datasource: &str,
        fields: &BTreeSet<String>,
        plan: &ExpandPlan,
    ) -> ExpandQuery {
        let selected: Vec<Selected> = plan
            .values
            .iter()
            .filter_map(|value| self.resolve(datasource, fields, value))
            .collect();
        let wanted: Vec<String> = if plan.fields.is_empty() {
            let mut all: Vec<String> = Vec::new();
            for field in selected.iter().flat_map(|s| s.fields.iter()) {
                if !all.contains(field) {
                    all.push(field.clone());
                }
            }
            all
        } else {
            plan.fields
                .iter()
                .filter(|f| fields.contains(*f))
                .cloned()
                .collect()
        };
        ExpandQuery {
            selected,
            fields: wanted,
            size: plan.size,
            exclude: plan.exclude.clone(),
            mode: plan.mode,
        }
    }

    /// The fields, in any datasource, that values of `field` may be found in.
    pub fn linked_to(&self, field: &str) -> BTreeSet<String> {
        let mut all = BTreeSet::from([field.to_owned()]);
        for (_, link) in &self.links {
            if link.members().any(|(_, f)| f == field) {
                all.extend(link.members().map(|(_, f)| f.to_owned()));
            }
        }
        all
    }
}

/// A Lucene query matching records that hold any selected value in one of
/// its fields: `field:"value" OR …`, every value a quoted phrase.
pub fn sample_query(query: &ExpandQuery) -> String {
    let mut clauses = Vec::new();
    for selected in &query.selected {
        for field in &selected.fields {
            clauses.push(format!(
                "{}:\"{}\"",
                escape_field(field),
                selected
                    .value
                    .value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
            ));
        }
    }
    clauses.join(" OR ")
}

/// A field path as a Lucene term: its special characters escaped.
fn escape_field(field: &str) -> String {
    let mut escaped = String::with_capacity(field.len());
    for c in field.chars() {
        if "+-&|!(){}[]^\"~*?:\\/ ".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Expands through `datasource`: its own aggregation, or a sample of the
/// records holding the selection, searched and counted here.
pub async fn expand_one(
    datasource: &dyn Datasource,
    context: &RequestContext,
    query: &ExpandQuery,
    sink_for: impl FnOnce(Box<dyn BatchTarget>) -> ResultSink,
) -> Result<Expansion, DatasourceError> {
    if query.selected.is_empty() || query.fields.is_empty() {
        return Ok(Expansion {
            method: if query.selected.is_empty() {
                "none: this datasource holds no selected value's field, nor one linked to it".into()
            } else {
                "none: this datasource has none of the fields asked for".into()
            },
            ..Expansion::default()
        });
    }
    if let Some(found) = datasource.expand(context, query).await? {
        return Ok(found);
    }
    let collected = Collected::default();
    let records = collected.records.clone();
    let mut sink = sink_for(Box::new(collected));
    let search = SearchQuery {
        query: sample_query(query),
        from: 0,
        size: SAMPLE_SIZE,
    };
    datasource.search(context, &search, &mut sink).await?;
    let total = sink.total().unwrap_or(0);
    let records: Vec<_> = std::mem::take(&mut *lock(&records))
        .iter()
        .map(Item::field_map)
        .collect();
    let mut found = count_expansion(query, &records, None);
    found.sampled = (total > records.len() as u64).then_some(records.len() as u64);
    found.method = format!(
        "sample: the first {} of {total} matching records, searched and counted by the server",
        records.len()
    );
    Ok(found)
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps what a sample search pushes.
#[derive(Default)]
struct Collected {
    records: std::sync::Arc<std::sync::Mutex<Vec<Item>>>,
}

#[async_trait]
impl BatchTarget for Collected {
    async fn push(&mut self, _total: u64, items: Vec<Item>) -> Result<(), SinkClosed> {
        lock(&self.records).extend(items);
        Ok(())
    }

    fn is_closed(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        let mut map = BTreeMap::new();
        map.insert(
            "person".to_owned(),
            LinkSettings {
                fields: vec![
                    "tweets:user.screen_name".into(),
                    "tweets:mentions".into(),
                    "emails:from".into(),
                    "emails:to".into(),
                ],
                lowercase: true,
            },
        );
        Links::new(&map)
    }

    fn set(fields: &[&str]) -> BTreeSet<String> {
        fields.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn a_value_is_looked_for_in_its_field_and_every_linked_one() {
        let value = FieldValue::new("user.screen_name", "annad0");
        let tweets = links()
            .resolve(
                "tweets",
                &set(&["user.screen_name", "mentions", "text"]),
                &value,
            )
            .unwrap();
        assert_eq!(tweets.fields, ["user.screen_name", "mentions"]);
        assert!(tweets.lowercase);
        let emails = links()
            .resolve("emails", &set(&["from", "to", "subject"]), &value)
            .unwrap();
        assert_eq!(emails.fields, ["from", "to"]);
        // An unlinked field the datasource lacks: nowhere to look.
        let other = FieldValue::new("hashtags", "x");
        assert!(links()
            .resolve("emails", &set(&["from", "to"]), &other)
            .is_none());
    }

    #[test]
    fn the_sample_query_quotes_values_and_escapes_fields() {
        let query = ExpandQuery {
            selected: vec![Selected {
                value: FieldValue::new("a b", "say \"hi\""),
                fields: vec!["a b".into(), "user.name".into()],
                lowercase: false,
            }],
            fields: vec![],
            size: 1,
            exclude: BTreeSet::new(),
            mode: Default::default(),
        };
        assert_eq!(
            sample_query(&query),
            r#"a\ b:"say \"hi\"" OR user.name:"say \"hi\"""#
        );
    }
}
