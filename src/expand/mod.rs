//! `EXPAND_REQUEST`: from selected values, through every datasource and the
//! links between their fields, to the values next to them.
//!
//! For each datasource: the selected values are looked for in the field
//! they came from (where the datasource has it) and in every field of this
//! datasource linked to it (`[links.*]`); the adapter counts with its own
//! aggregation ([`crate::datasources::Expand`]) or, without one, the server
//! searches a bounded sample of the matching records and counts that.

mod normalize;
mod plan;

#[cfg(test)]
use normalize::rewrite_bounded;
pub use normalize::{Normalizer, MAX_PATTERN, MAX_REWRITES, MAX_REWRITTEN};
pub use plan::ExpandPlan;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use crate::config::LinkSettings;
use crate::datasources::{
    count_between, count_expansion, selection_query, values_of, BatchTarget, Datasource,
    DatasourceError, ExpandQuery, Expansion, FieldValue, Item, RequestContext, ResultSink,
    SearchQuery, Selected, SinkClosed,
};
use crate::protocol::{LinkInfo, LinkedField};

/// Records the server searches and counts for a datasource without an
/// aggregation of its own.
pub const SAMPLE_SIZE: u64 = 1_000;

/// Candidate values listed per field when a link rewrites values.
pub const CANDIDATES: usize = 1_000;

/// A link of the configuration or of a request, compiled.
#[derive(Debug, Clone)]
struct Link {
    name: String,
    settings: LinkSettings,
    normalizer: Normalizer,
}

impl Link {
    fn new(name: String, settings: LinkSettings) -> Option<Link> {
        // Links were checked when read (configuration, request): one that
        // does not compile here is left out rather than followed wrongly.
        let normalizer = Normalizer::new(settings.lowercase, &settings.replace).ok()?;
        Some(Link {
            name,
            settings,
            normalizer,
        })
    }
}

/// The links of the configuration, as the expansion uses them.
#[derive(Debug, Clone, Default)]
pub struct Links {
    links: Vec<Link>,
}

/// What an expansion asks of one datasource, before the server has found
/// how it calls values that links rewrite.
#[derive(Debug, Clone)]
pub struct Planned {
    pub query: ExpandQuery,
    /// Per selected value: the rewriting link's normalisation, if any.
    rewrites: Vec<Option<Normalizer>>,
    /// The links between the selected values, not new values.
    pub between: bool,
}

impl Links {
    pub fn new(links: &BTreeMap<String, LinkSettings>) -> Links {
        Links {
            links: links
                .iter()
                .filter_map(|(name, link)| Link::new(name.clone(), link.clone()))
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
                replace: link.replace.clone(),
            };
            links.links.extend(Link::new(link.name.clone(), settings));
        }
        links
    }

    /// Where `datasource` (with `fields`) holds values like `value`, how
    /// they compare, and the normalisation when a link rewrites them;
    /// `None` when it holds none.
    pub fn resolve(
        &self,
        datasource: &str,
        fields: &BTreeSet<String>,
        value: &FieldValue,
    ) -> Option<(Selected, Option<Normalizer>)> {
        let mut found: Vec<String> = Vec::new();
        if fields.contains(&value.field) {
            found.push(value.field.clone());
        }
        let own = !found.is_empty();
        let mut normalizer = Normalizer::default();
        let mut via = None;
        for link in &self.links {
            // A link carries the value when any of its fields has the value's
            // field name, or the value names the link itself (a client that
            // shows the link's values as one node sends its name).
            let members = || link.settings.members();
            if link.name != value.field && !members().any(|(_, field)| field == value.field) {
                continue;
            }
            normalizer = normalizer.and(&link.normalizer);
            for (id, field) in members() {
                if id == datasource && fields.contains(field) && !found.iter().any(|f| f == field) {
                    found.push(field.to_owned());
                    if !own && via.is_none() {
                        via = Some(link.name.clone());
                    }
                }
            }
        }
        if found.is_empty() {
            return None;
        }
        let mut selected = Selected::new(value.clone(), found);
        selected.via = via;
        if normalizer.rewrites() {
            // Looked for by the exact values found beforehand.
            Some((selected, Some(normalizer)))
        } else {
            selected.lowercase = normalizer.lowercase;
            Some((selected, None))
        }
    }

    /// The expansion `plan` asks of `datasource` (with `fields`): the
    /// selected values it holds, and the fields of new values (asked for,
    /// or by default the fields holding the selection).
    pub fn query_for(
        &self,
        datasource: &str,
        fields: &BTreeSet<String>,
        plan: &ExpandPlan,
    ) -> Planned {
        let (selected, rewrites): (Vec<Selected>, Vec<Option<Normalizer>>) = plan
            .values
            .iter()
            .filter_map(|value| self.resolve(datasource, fields, value))
            .unzip();
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
        Planned {
            query: ExpandQuery {
                selected,
                fields: wanted,
                size: plan.size,
                exclude: plan.exclude.clone(),
                mode: plan.mode,
            },
            rewrites,
            between: plan.between,
        }
    }

    /// The links as clients see them, with only the fields of `datasources`
    /// (those the caller may use); a link left with fewer than two fields
    /// joins nothing and is not listed.
    pub fn infos(&self, datasources: &[&str]) -> Vec<LinkInfo> {
        self.links
            .iter()
            .filter_map(|link| {
                let fields: Vec<LinkedField> = link
                    .settings
                    .members()
                    .filter(|(id, _)| datasources.contains(id))
                    .map(|(id, field)| LinkedField {
                        datasource: id.to_owned(),
                        field: field.to_owned(),
                    })
                    .collect();
                (fields.len() >= 2).then(|| LinkInfo {
                    name: link.name.clone(),
                    fields,
                    lowercase: link.settings.lowercase,
                    replace: link.settings.replace.clone(),
                })
            })
            .collect()
    }

    /// The fields, in any datasource, that values of `field` may be found in.
    pub fn linked_to(&self, field: &str) -> BTreeSet<String> {
        let mut all = BTreeSet::from([field.to_owned()]);
        for link in &self.links {
            let members = || link.settings.members();
            if link.name == field || members().any(|(_, f)| f == field) {
                all.extend(members().map(|(_, f)| f.to_owned()));
            }
        }
        all
    }
}

/// Expands through `datasource`: its own aggregation, or a sample of the
/// records holding the selection, searched and counted here. Values a link
/// rewrites are first looked up as this datasource holds them.
pub async fn expand_one(
    datasource: &dyn Datasource,
    context: &RequestContext,
    planned: Planned,
    sink_for: impl Fn(Box<dyn BatchTarget>) -> ResultSink,
) -> Result<Expansion, DatasourceError> {
    let Planned {
        mut query,
        rewrites,
        between,
    } = planned;
    let asked = query.selected.len();
    if rewrites.iter().any(Option::is_some) {
        let mut kept = Vec::with_capacity(query.selected.len());
        for (mut selected, rewrite) in query.selected.into_iter().zip(rewrites) {
            if let Some(normalizer) = rewrite {
                selected.forms =
                    forms_of(datasource, context, &selected, &normalizer, &sink_for).await?;
            }
            if !selected.forms.is_empty() {
                kept.push(selected);
            }
        }
        query.selected = kept;
    }
    if query.selected.is_empty() || query.fields.is_empty() {
        return Ok(Expansion {
            method: if asked > 0 && query.selected.is_empty() {
                "none: no value of this datasource's linked fields rewrites to a selected one"
                    .into()
            } else if query.selected.is_empty() {
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
    if !between {
        if let Some(expander) = datasource.expander() {
            if let Some(found) = expander.expand(context, &query, sink.work()).await? {
                return Ok(found);
            }
        }
    }
    let search = SearchQuery {
        query: selection_query(&query),
        from: 0,
        size: SAMPLE_SIZE,
    };
    datasource.search(context, &search, &mut sink).await?;
    let total = sink.total().unwrap_or(0);
    let records: Vec<_> = std::mem::take(&mut *lock(&records))
        .iter()
        .map(Item::field_map)
        .collect();
    // Links between the selected values: counted over the same sample, in
    // every datasource alike (no adapter aggregates pairs of values).
    let mut found = if between {
        count_between(&query.selected, &records)
    } else {
        count_expansion(&query, &records, None)
    };
    found.sampled = (total > records.len() as u64).then_some(records.len() as u64);
    found.method = format!(
        "sample: the first {} of {total} matching records, searched and counted by the server",
        records.len()
    );
    Ok(found)
}

/// The values of `selected`'s fields in `datasource` that `normalizer`
/// rewrites to the same as the selected value: the adapter lists the
/// candidates ([`ListValues`]) or, without a listing of its
/// own, the server reads them from a sample of records found by a regular
/// expression.
async fn forms_of(
    datasource: &dyn Datasource,
    context: &RequestContext,
    selected: &Selected,
    normalizer: &Normalizer,
    sink_for: &impl Fn(Box<dyn BatchTarget>) -> ResultSink,
) -> Result<Vec<String>, DatasourceError> {
    let key = normalizer.apply(&selected.value.value);
    let hint = normalizer.hint(&key);
    let mut forms: Vec<String> = Vec::new();
    for field in &selected.fields {
        let listed = match datasource.value_lister() {
            Some(lister) => Some(
                lister
                    .values_like(context, field, &hint, CANDIDATES)
                    .await?,
            ),
            None => None,
        };
        let candidates = match listed {
            Some(listed) => listed,
            None => {
                let collected = Collected::default();
                let records = collected.records.clone();
                let mut sink = sink_for(Box::new(collected));
                let search = SearchQuery {
                    query: format!(
                        "{}:/{}/",
                        crate::datasources::escape_field(field),
                        hint.lucene_regexp().replace('/', "\\/")
                    ),
                    from: 0,
                    size: SAMPLE_SIZE,
                };
                datasource.search(context, &search, &mut sink).await?;
                let records = std::mem::take(&mut *lock(&records));
                records
                    .iter()
                    .flat_map(|item| values_of(&item.field_map(), field))
                    .collect()
            }
        };
        for candidate in candidates {
            if hint.matches(&candidate)
                && normalizer.apply(&candidate) == key
                && !forms.contains(&candidate)
            {
                forms.push(candidate);
            }
        }
    }
    Ok(forms)
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
    use crate::protocol::LinkRewrite;
    use regex::Regex;

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
                replace: Vec::new(),
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

    fn planned(query: &ExpandQuery) -> Planned {
        Planned {
            query: query.clone(),
            rewrites: vec![None; query.selected.len()],
            between: false,
        }
    }

    #[tokio::test]
    async fn without_an_aggregation_a_sample_is_counted_and_said_to_be() {
        let query = ExpandQuery {
            selected: vec![Selected::new(
                FieldValue::new("tag", "a"),
                vec!["tag".into()],
            )],
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
        let found = expand_one(&Plain { count: 2_500 }, &context, planned(&query), sink)
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
        let found = expand_one(&Plain { count: 70 }, &context, planned(&query), sink)
            .await
            .unwrap();
        assert_eq!(found.sampled, None);
        assert_eq!(found.vertices[0].doc_count, 10);
    }

    fn rewrite(regex: &str, with: &str) -> LinkRewrite {
        LinkRewrite {
            regex: regex.into(),
            with: with.into(),
        }
    }

    #[test]
    fn rewrites_cannot_grow_a_value_without_bound() {
        let grow = rewrite(".", &"$0".repeat(100));
        let hostile = Normalizer::new(false, &[grow.clone(), grow.clone(), grow]).unwrap();
        let started = std::time::Instant::now();
        let out = hostile.apply(&"é".repeat(300));
        assert!(out.len() <= MAX_REWRITTEN, "{}", out.len());
        assert!(out.len() > MAX_REWRITTEN - 4, "{}", out.len());
        assert!(out.chars().all(|c| c == 'é'));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // As replace_all below the limit, `$1` groups and empty matches alike.
        for (regex, with, value) in [
            ("(a)(b)?", "[$1$2]", "xaabyab"),
            ("", "-", "ab"),
            ("b*", "+", "abba"),
        ] {
            let plain = Regex::new(regex)
                .unwrap()
                .replace_all(value, with)
                .into_owned();
            assert_eq!(
                rewrite_bounded(&Regex::new(regex).unwrap(), with, value, 100),
                plain
            );
        }
        let long_with = rewrite("a", &"x".repeat(MAX_PATTERN + 1));
        assert!(Normalizer::new(false, &[long_with])
            .unwrap_err()
            .contains("`with`"));
    }

    #[test]
    fn a_normalizer_lowercases_then_rewrites_in_order() {
        let strip = Normalizer::new(true, &[rewrite("@.*$", ""), rewrite(r"^\.+", "")]).unwrap();
        assert_eq!(strip.apply("Anna.D@Example.org"), "anna.d");
        assert_eq!(strip.apply("..annad"), "annad");
        assert!(strip.rewrites());
        assert!(!Normalizer::new(true, &[]).unwrap().rewrites());
        // Groups in the replacement.
        let swap = Normalizer::new(false, &[rewrite(r"^(\w+)@(\w+)$", "$2/$1")]).unwrap();
        assert_eq!(swap.apply("ann@acme"), "acme/ann");
        // Bad patterns are refused with the reason.
        let error = Normalizer::new(false, &[rewrite("(", "")]).unwrap_err();
        assert!(error.contains("not a regular expression"), "{error}");
        assert!(Normalizer::new(false, &[rewrite("", "")]).is_err());
        assert!(Normalizer::new(false, &[rewrite(&"a".repeat(MAX_PATTERN + 1), "")]).is_err());
        assert!(Normalizer::new(false, &vec![rewrite("a", ""); MAX_REWRITES + 1]).is_err());
        // A pattern that compiles too large is refused, not built.
        assert!(Normalizer::new(false, &[rewrite(r"\w{200}\w{200}\w{100}", "")]).is_err());
    }

    #[test]
    fn the_hint_holds_in_every_value_that_rewrites_to_the_key() {
        let values = [
            "annad",
            "AnnaD@x.org",
            "a.n.n.a.d",
            "Kannad",
            "ANNAD@y",
            "bob",
            "anna",
        ];
        let cases = [
            Normalizer::new(true, &[rewrite("@.*$", "")]).unwrap(),
            Normalizer::new(false, &[rewrite(r"\.", "")]).unwrap(),
            Normalizer::new(true, &[rewrite("^k", "")]).unwrap(),
            Normalizer::new(false, &[rewrite("nn", "n-n")]).unwrap(),
            Normalizer::new(false, &[rewrite("(a)", "$1$1")]).unwrap(),
        ];
        for normalizer in &cases {
            for value in values {
                let key = normalizer.apply(value);
                let hint = normalizer.hint(&key);
                assert!(hint.matches(value), "{normalizer:?} {value} {key} {hint:?}");
            }
        }
        // The hint narrows: a stripped domain keeps every letter of the key.
        let hint = cases[0].hint("annad");
        assert_eq!(hint.chars, ['a', 'n', 'n', 'a', 'd']);
        assert!(!hint.matches("bob"));
        // Letters a rewrite may write are not sure to be in the value.
        assert_eq!(cases[3].hint("an-nad").chars, ['a', 'a', 'd']);
        // Groups copy text in any order: nothing is sure.
        assert!(cases[4].hint("aa").chars.is_empty());
    }

    #[test]
    fn a_value_carried_by_a_rewriting_link_is_resolved_later() {
        let mut map = BTreeMap::new();
        map.insert(
            "handle".to_owned(),
            LinkSettings {
                fields: vec!["tweets:user.screen_name".into(), "emails:from".into()],
                lowercase: true,
                replace: vec![rewrite("@.*$", "")],
            },
        );
        let links = Links::new(&map);
        let value = FieldValue::new("user.screen_name", "AnnaD");
        let (selected, normalizer) = links.resolve("emails", &set(&["from"]), &value).unwrap();
        assert_eq!(selected.via.as_deref(), Some("handle"));
        assert!(!selected.lowercase, "looked for by exact forms");
        assert_eq!(normalizer.unwrap().apply("annad@x"), "annad");
        assert_eq!(links.infos(&["tweets", "emails"])[0].replace.len(), 1);
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
            .unwrap()
            .0;
        assert_eq!(tweets.fields, ["user.screen_name", "mentions"]);
        assert!(tweets.lowercase);
        let emails = links()
            .resolve("emails", &set(&["from", "to", "subject"]), &value)
            .unwrap()
            .0;
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
            .unwrap()
            .0;
        assert_eq!(emails.fields, ["from", "to"]);
        // An unlinked field the datasource lacks: nowhere to look.
        let other = FieldValue::new("hashtags", "x");
        assert!(links()
            .resolve("emails", &set(&["from", "to"]), &other)
            .is_none());
    }
}
