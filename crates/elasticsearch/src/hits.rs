//! `_search` responses read straight into items, in one pass: each hit's
//! `_source` is flattened to dotted paths while the body is parsed
//! ([`Flattened`]), its values copied as the cluster wrote them (no
//! `serde_json::Value` tree, no map, no re-encoding per hit).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tributary_datasource::{DatasourceError, Item};

use tributary_datasource::flatten::Flattened;

/// One `_search` (or scroll) response, read.
#[derive(Debug, Default)]
pub struct Page {
    /// `hits.total` (7.x+ `{"value": n}`, 6.x a number), when tracked.
    pub total: Option<u64>,
    pub hits: Vec<Hit>,
    pub pit_id: Option<String>,
    pub scroll_id: Option<String>,
}

#[derive(Debug)]
pub struct Hit {
    pub item: Item,
    /// The hit's `sort` values, when the search sorted.
    pub sort: Option<Value>,
}

impl Page {
    pub fn parse(text: &str) -> Result<Page, DatasourceError> {
        let raw: RawPage = serde_json::from_str(text).map_err(|e| {
            DatasourceError::unavailable(format!(
                "Elasticsearch answered a search with a body tributary cannot read: {e}"
            ))
        })?;
        let Some(hits) = raw.hits else {
            return Err(DatasourceError::unavailable(
                "Elasticsearch answered without `hits.hits`",
            ));
        };
        let Some(list) = hits.hits else {
            return Err(DatasourceError::unavailable(
                "Elasticsearch answered without `hits.hits`",
            ));
        };
        let hits_read = list
            .into_iter()
            .map(RawHit::read)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                DatasourceError::unavailable(format!(
                    "Elasticsearch answered a hit tributary cannot read: {e}"
                ))
            })?;
        Ok(Page {
            total: hits.total.map(|t| match t {
                Total::Object { value } => value,
                Total::Number(n) => n,
            }),
            hits: hits_read,
            pit_id: raw.pit_id.map(Cow::into_owned),
            scroll_id: raw.scroll_id.map(Cow::into_owned),
        })
    }

    /// The items, in order.
    pub fn into_items(self) -> Vec<Item> {
        self.hits.into_iter().map(|hit| hit.item).collect()
    }
}

#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow, default)]
    hits: Option<RawHits<'a>>,
    #[serde(borrow, default)]
    pit_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "_scroll_id")]
    scroll_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawHits<'a> {
    #[serde(default)]
    total: Option<Total>,
    #[serde(borrow, default)]
    hits: Option<Vec<RawHit<'a>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Total {
    Object { value: u64 },
    Number(u64),
}

#[derive(Deserialize)]
struct RawHit<'a> {
    #[serde(borrow, default)]
    _id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    _index: Option<&'a RawValue>,
    #[serde(default)]
    _source: Option<Flattened>,
    #[serde(borrow, default)]
    highlight: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sort: Option<&'a RawValue>,
}

impl RawHit<'_> {
    fn read(self) -> Result<Hit, serde_json::Error> {
        let mut fields = self._source.unwrap_or_default();
        if let Some(index) = self._index {
            fields.push("_index", index.get());
        }
        let id = match self._id {
            Some(raw) if starts_with(raw, b'"') => serde_json::from_str::<String>(raw.get())?,
            Some(raw) => raw.get().to_owned(),
            None => "null".to_owned(),
        };
        let mut item = Item {
            id,
            fields: fields.finish()?,
            highlight: None,
        };
        if let Some(highlight) = self.highlight {
            item = with_highlight(item, highlight)?;
        }
        let sort = self
            .sort
            .map(|s| serde_json::from_str(s.get()))
            .transpose()?;
        Ok(Hit { item, sort })
    }
}

/// Highlights as `{path: [fragments]}` (strings only), as before.
fn with_highlight(item: Item, raw: &RawValue) -> Result<Item, serde_json::Error> {
    let Value::Object(highlight) = serde_json::from_str(raw.get())? else {
        return Ok(item);
    };
    let highlight: std::collections::BTreeMap<String, Vec<String>> = highlight
        .into_iter()
        .map(|(path, fragments)| {
            let fragments = match fragments {
                Value::Array(list) => list
                    .into_iter()
                    .filter_map(|f| match f {
                        Value::String(s) => Some(s),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            (path, fragments)
        })
        .collect();
    Ok(item.with_highlight(&highlight))
}

fn starts_with(raw: &RawValue, byte: u8) -> bool {
    raw.get().as_bytes().first() == Some(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    /// What the general route makes of a hit: the reference.
    fn reference(hit: &Value) -> Map<String, Value> {
        let mut fields = match hit.get("_source") {
            Some(Value::Object(source)) => tributary_datasource::flatten::flatten(source),
            _ => Map::new(),
        };
        if let Some(index) = hit.get("_index") {
            fields.insert("_index".into(), index.clone());
        }
        fields
    }

    fn page_of(hits: &[Value]) -> String {
        json!({"took": 1, "hits": {"total": {"value": 7, "relation": "eq"}, "hits": hits}})
            .to_string()
    }

    #[test]
    fn hits_read_as_the_general_route_reads_them() {
        let hits = [
            json!({"_index": "t", "_id": "1", "_source": {"user": {"name": "Ann \"A\"", "tags": ["x", "y"], "deep": {"n": 1.5e3}}, "ok": true, "none": null}}),
            json!({"_index": "t", "_id": 7, "_source": {"a.b": 1, "list": [{"k": 1}, {"k": 2, "j": "z"}, 3], "empty": {}, "e\u{e9}\n": "\u{2028}"}}),
            json!({"_index": "t", "_id": "3"}),
            json!({"_index": "t", "_id": "4", "_source": {"x": []}, "highlight": {"x": ["<em>a</em>", 3]}, "sort": [5, "b"]}),
        ];
        let page = Page::parse(&page_of(&hits)).unwrap();
        assert_eq!(page.total, Some(7));
        assert_eq!(page.hits.len(), hits.len());
        for (hit, read) in hits.iter().zip(&page.hits) {
            assert_eq!(read.item.field_map(), reference(hit), "{hit}");
        }
        assert_eq!(page.hits[1].item.id, "7");
        let highlight: Value =
            serde_json::from_str(page.hits[3].item.highlight.as_ref().unwrap().get()).unwrap();
        assert_eq!(highlight, json!({"x": ["<em>a</em>"]}));
        assert_eq!(page.hits[3].sort, Some(json!([5, "b"])));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z\"\\ é\n]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::vec(("[a-c.\"]{1,3}", inner), 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_source_reads_as_the_general_route_reads_it(
            source in proptest::collection::vec(("[a-d\"]{1,3}", json_value()), 0..5)
        ) {
            let source = Value::Object(source.into_iter().collect());
            let hit = json!({"_index": "i", "_id": "x", "_source": source});
            let text = page_of(std::slice::from_ref(&hit));
            // The general route reads the same text (numbers as parsed from it).
            let parsed: Value = serde_json::from_str(&text).unwrap();
            let page = Page::parse(&text).unwrap();
            proptest::prop_assert_eq!(page.hits[0].item.field_map(), reference(&parsed["hits"]["hits"][0]));
        }
    }

    #[test]
    fn every_response_shape() {
        let old = json!({"hits": {"total": 3, "hits": []}, "_scroll_id": "s1"}).to_string();
        let page = Page::parse(&old).unwrap();
        assert_eq!(
            (page.total, page.scroll_id.as_deref()),
            (Some(3), Some("s1"))
        );
        let pit = json!({"pit_id": "p2", "hits": {"hits": []}}).to_string();
        let page = Page::parse(&pit).unwrap();
        assert_eq!((page.total, page.pit_id.as_deref()), (None, Some("p2")));
        assert!(Page::parse(r#"{"took": 1}"#).is_err());
        assert!(Page::parse("not json").is_err());
    }
}
