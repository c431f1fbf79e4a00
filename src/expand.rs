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
    count_expansion, selection_query, BatchTarget, Datasource, DatasourceError, ExpandQuery,
    Expansion, FieldValue, Item, RequestContext, ResultSink, SearchQuery, Selected, SinkClosed,
};
use crate::protocol::{LinkInfo, LinkedField};
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

    /// These links and a request's own (`EXPAND_REQUEST` `links`).
    pub fn with(&self, extra: &[LinkInfo]) -> Links {
        let mut links = self.clone();
        for link in extra {
            let settings = LinkSettings {
                fields: link
                    .fields
                    .iter()
                    .map(|f| format!("{}:{}", f.datasource, f.field))
                    .collect(),
                lowercase: link.lowercase,
            };
            links.links.push((link.name.clone(), settings));
        }
        links
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
        let own = !found.is_empty();
        let mut lowercase = false;
        let mut via = None;
        for (name, link) in &self.links {
            // A link carries the value when any of its fields has the value's
            // field name, or the value names the link itself (a client that
            // shows the link's values as one node sends its name).
            if *name != value.field && !link.members().any(|(_, field)| field == value.field) {
                continue;
            }
            lowercase |= link.lowercase;
            for (id, field) in link.members() {
                if id == datasource && fields.contains(field) && !found.iter().any(|f| f == field) {
                    found.push(field.to_owned());
                    if !own && via.is_none() {
                        via = Some(name.clone());
                    }
                }
            }
        }
        (!found.is_empty()).then(|| Selected {
            value: value.clone(),
            fields: found,
            lowercase,
            via,
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

    /// The links as clients see them, with only the fields of `datasources`
    /// (those the caller may use); a link left with fewer than two fields
    /// joins nothing and is not listed.
    pub fn infos(&self, datasources: &[&str]) -> Vec<LinkInfo> {
        self.links
            .iter()
            .filter_map(|(name, link)| {
                let fields: Vec<LinkedField> = link
                    .members()
                    .filter(|(id, _)| datasources.contains(id))
                    .map(|(id, field)| LinkedField {
                        datasource: id.to_owned(),
                        field: field.to_owned(),
                    })
                    .collect();
                (fields.len() >= 2).then(|| LinkInfo {
                    name: name.clone(),
                    fields,
                    lowercase: link.lowercase,
                })
            })
            .collect()
    }

    /// The fields, in any datasource, that values of `field` may be found in.
    pub fn linked_to(&self, field: &str) -> BTreeSet<String> {
        let mut all = BTreeSet::from([field.to_owned()]);
        for (name, link) in &self.links {
            if name == field || link.members().any(|(_, f)| f == field) {
                all.extend(link.members().map(|(_, f)| f.to_owned()));
            }
        }
        all
    }
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
    let collected = Collected::default();
    let records = collected.records.clone();
    let mut sink = sink_for(Box::new(collected));
    if let Some(found) = datasource.expand(context, query, sink.work()).await? {
        return Ok(found);
    }
    let search = SearchQuery {
        query: selection_query(query),
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

    /// A datasource with no aggregation of its own: `count` records, each
    /// `{"tag": "a", "n": "<i % 7>"}`; every search matches them all.
    struct Plain {
        count: usize,
    }

    #[async_trait]
    impl Datasource for Plain {
        async fn fields(
            &self,
            _: &RequestContext,
        ) -> Result<crate::datasources::FieldList, DatasourceError> {
            Ok(crate::datasources::FieldList::default())
        }

        async fn search(
            &self,
            _: &RequestContext,
            query: &SearchQuery,
            results: &mut ResultSink,
        ) -> Result<(), DatasourceError> {
            results.set_total(self.count as u64);
            let page = (0..self.count.min(query.size as usize))
                .map(|i| {
                    let fields = serde_json::json!({"tag": "a", "n": (i % 7).to_string()});
                    Item::from_fields(
                        i.to_string(),
                        fields.as_object().unwrap_or(&Default::default()),
                    )
                })
                .collect();
            results.push(page).await?;
            Ok(())
        }
    }

    #[tokio::test]
    async fn without_an_aggregation_a_sample_is_counted_and_said_to_be() {
        let query = ExpandQuery {
            selected: vec![Selected {
                value: FieldValue::new("tag", "a"),
                fields: vec!["tag".into()],
                lowercase: false,
                via: None,
            }],
            fields: vec!["n".into()],
            size: 10,
            exclude: BTreeSet::new(),
            mode: Default::default(),
        };
        let context = RequestContext {
            caller: Default::default(),
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(5),
        };
        let sink = |target: Box<dyn BatchTarget>| {
            ResultSink::new(target, Default::default(), Default::default())
        };
        let found = expand_one(&Plain { count: 2_500 }, &context, &query, sink)
            .await
            .unwrap();
        assert_eq!(found.sampled, Some(SAMPLE_SIZE));
        assert!(
            found.method.contains("first 1000 of 2500"),
            "{}",
            found.method
        );
        // 1,000 records counted: values 0..7 round robin.
        let total: u64 = found.vertices.iter().map(|v| v.doc_count).sum();
        assert_eq!(total, SAMPLE_SIZE);
        assert_eq!(found.vertices.len(), 7);
        // All of them fit: no `sampled`.
        let found = expand_one(&Plain { count: 70 }, &context, &query, sink)
            .await
            .unwrap();
        assert_eq!(found.sampled, None);
        assert_eq!(found.vertices[0].doc_count, 10);
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
        assert_eq!(
            emails.via.as_deref(),
            Some("person"),
            "found through the link"
        );
        assert_eq!(tweets.via, None, "tweets hold the field itself");
        // The link's name stands for all its fields.
        let by_link = FieldValue::new("person", "annad0");
        let emails = links()
            .resolve("emails", &set(&["from", "to"]), &by_link)
            .unwrap();
        assert_eq!(emails.fields, ["from", "to"]);
        // An unlinked field the datasource lacks: nowhere to look.
        let other = FieldValue::new("hashtags", "x");
        assert!(links()
            .resolve("emails", &set(&["from", "to"]), &other)
            .is_none());
    }
}
