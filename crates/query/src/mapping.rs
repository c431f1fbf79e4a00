//! Elasticsearch mappings: which field holds which type of value, read from
//! a mapping's JSON (`{"properties": …}`, or an index body with `mappings`)
//! or inferred from records as Elasticsearch's dynamic mapping does.
//!
//! Paths are dotted (`user.name`); a multi-field is its own field
//! (`user.name.keyword`) indexing its parent's value.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// How a field's values are indexed and queried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// Analysed with the standard analyzer, matched word by word.
    Text,
    /// One exact value, optionally lowercased; values longer than
    /// `ignore_above` characters are not indexed.
    Keyword {
        lowercase: bool,
        ignore_above: Option<usize>,
    },
    /// Whole numbers (`long`, `integer`, `short`, `byte`).
    Long,
    /// Decimal numbers (`double`, `float`, `half_float`, `scaled_float`):
    /// `float` at single precision, the others as 64-bit floats.
    Double,
    /// Milliseconds since the epoch (`date`, `date_nanos`).
    Date,
    Boolean,
    /// A type queries do not evaluate here (`ip`, `geo_point`, …): listed, never matched.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedField {
    /// The field's name in queries: `user.name`, `user.name.keyword`.
    pub path: String,
    /// The record value it indexes: the path itself, or a multi-field's parent.
    pub source: String,
    pub field_type: FieldType,
    /// The type as the mapping names it (`integer`, `float`, `keyword` …).
    pub declared: String,
    /// `false` for `"index": false` fields.
    pub indexed: bool,
    /// Analysis this crate cannot reproduce (an analyzer other than
    /// `standard`, a normalizer other than `lowercase`), said in words;
    /// a datasource evaluating queries itself refuses such a mapping, one
    /// only listing fields does not care.
    pub unsupported: Option<String>,
}

impl MappedField {
    /// Is this a multi-field (`title.keyword`) rather than a record field?
    pub fn is_multi_field(&self) -> bool {
        self.path != self.source
    }
}

/// What happens to a record field the mapping does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dynamic {
    /// It is mapped from its first value (the default).
    True,
    /// It is kept in results but not searchable.
    False,
    /// It is an error.
    Strict,
}

#[derive(Debug, Clone)]
pub struct Mapping {
    fields: Vec<MappedField>,
    objects: BTreeSet<String>,
    pub dynamic: Dynamic,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            fields: Vec::new(),
            objects: BTreeSet::new(),
            dynamic: Dynamic::True,
        }
    }
}

impl Mapping {
    /// Reads a mapping: a `{"properties": …}` object, an index body
    /// `{"settings": …, "mappings": {…}}`, or a typed mapping of older
    /// clusters (`{"_doc": {"properties": …}}`).
    pub fn from_json(value: &Value) -> Result<Mapping, String> {
        let body = value.as_object().ok_or("a mapping must be a JSON object")?;
        let mappings = match body.get("mappings") {
            Some(Value::Object(mappings)) => mappings,
            Some(_) => return Err("`mappings` must be an object".into()),
            None => body,
        };
        let typed;
        let mappings = if mappings.contains_key("properties") || mappings.contains_key("dynamic") {
            mappings
        } else {
            // `{"_doc": {"properties": …}}`
            match mappings
                .values()
                .find_map(|v| v.as_object().filter(|o| o.contains_key("properties")))
            {
                Some(inner) => {
                    typed = inner.clone();
                    &typed
                }
                None => mappings,
            }
        };
        let mut mapping = Mapping {
            dynamic: match mappings.get("dynamic") {
                None | Some(Value::Bool(true)) => Dynamic::True,
                Some(Value::String(s)) if s == "true" => Dynamic::True,
                Some(Value::Bool(false)) => Dynamic::False,
                Some(Value::String(s)) if s == "false" || s == "runtime" => Dynamic::False,
                Some(Value::String(s)) if s == "strict" => Dynamic::Strict,
                Some(other) => return Err(format!("`dynamic`: unknown value {other}")),
            },
            ..Mapping::default()
        };
        if let Some(properties) = mappings.get("properties") {
            let properties = properties
                .as_object()
                .ok_or("`properties` must be an object")?;
            mapping.read_properties(properties, "")?;
        }
        mapping.fields.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(mapping)
    }

    fn read_properties(
        &mut self,
        properties: &Map<String, Value>,
        prefix: &str,
    ) -> Result<(), String> {
        for (name, definition) in properties {
            let path = join(prefix, name);
            let definition = definition
                .as_object()
                .ok_or_else(|| format!("field `{path}`: its definition must be an object"))?;
            let declared = definition.get("type").and_then(Value::as_str);
            if let Some(children) = definition.get("properties") {
                if !matches!(declared, None | Some("object") | Some("nested")) {
                    return Err(format!(
                        "field `{path}`: a `{}` cannot have properties",
                        declared.unwrap_or("")
                    ));
                }
                let children = children
                    .as_object()
                    .ok_or_else(|| format!("field `{path}`: `properties` must be an object"))?;
                self.objects.insert(path.clone());
                self.read_properties(children, &path)?;
                continue;
            }
            let Some(declared) = declared else {
                return Err(format!("field `{path}`: no `type`"));
            };
            if matches!(declared, "object" | "nested") {
                self.objects.insert(path);
                continue;
            }
            let field = read_field(&path, &path, declared, definition)?;
            self.fields.push(field);
            if let Some(multi) = definition.get("fields") {
                let multi = multi
                    .as_object()
                    .ok_or_else(|| format!("field `{path}`: `fields` must be an object"))?;
                for (sub, sub_definition) in multi {
                    let sub_path = join(&path, sub);
                    let sub_definition = sub_definition.as_object().ok_or_else(|| {
                        format!("field `{sub_path}`: its definition must be an object")
                    })?;
                    let sub_declared = sub_definition
                        .get("type")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("field `{sub_path}`: no `type`"))?;
                    self.fields
                        .push(read_field(&sub_path, &path, sub_declared, sub_definition)?);
                }
            }
        }
        Ok(())
    }

    /// Maps every field of these (flattened) records that the mapping does
    /// not name yet, from its first non-null value, as dynamic mapping does.
    /// With `dynamic: strict`, an unmapped field is an error.
    pub fn add_dynamic<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a Map<String, Value>>,
    ) -> Result<(), String> {
        let mut known: BTreeSet<String> = self.fields.iter().map(|f| f.path.clone()).collect();
        for record in records {
            for (path, value) in record {
                if known.contains(path) {
                    continue;
                }
                let Some(first) = first_scalar(value) else {
                    continue;
                };
                match self.dynamic {
                    Dynamic::Strict => {
                        return Err(format!(
                            "field `{path}` is not in the mapping, which is strict (`\"dynamic\": \"strict\"`)"
                        ))
                    }
                    Dynamic::False => {
                        known.insert(path.clone());
                        continue;
                    }
                    Dynamic::True => {}
                }
                known.insert(path.clone());
                self.fields.extend(dynamic_fields(path, first));
                // Every prefix of a dotted path is an object.
                let mut prefix = path.as_str();
                while let Some((parent, _)) = prefix.rsplit_once('.') {
                    self.objects.insert(parent.to_owned());
                    prefix = parent;
                }
            }
        }
        self.fields.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(())
    }

    /// Maps a record field as a plain field of type `declared` (an
    /// Elasticsearch type name), replacing its mapping and multi-fields.
    pub fn set_type(&mut self, path: &str, declared: &str) -> Result<(), String> {
        let field = read_field(path, path, declared, &Map::new())?;
        if field.field_type == FieldType::Other {
            return Err(format!("field `{path}`: unknown type `{declared}`"));
        }
        self.fields.retain(|f| f.source != path);
        self.fields.push(field);
        self.fields.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(())
    }

    /// The first analysis this crate cannot reproduce, if any (see
    /// [`MappedField::unsupported`]).
    pub fn unsupported(&self) -> Option<&str> {
        self.fields.iter().find_map(|f| f.unsupported.as_deref())
    }

    /// Every field, multi-fields included, sorted by path.
    pub fn fields(&self) -> &[MappedField] {
        &self.fields
    }

    pub fn field(&self, path: &str) -> Option<&MappedField> {
        self.fields
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.fields[i])
    }

    /// The fields a query on `name` searches, as Elasticsearch resolves
    /// them: no name or `*` is every searchable field (multi-fields
    /// included, metadata fields and unsearchable types not); a pattern
    /// (`user.*`) every field it matches; a name that field, if mapped.
    pub fn resolve(&self, name: Option<&str>) -> Vec<&MappedField> {
        match name {
            None | Some("*") => self
                .fields
                .iter()
                .filter(|f| {
                    f.indexed && f.field_type != FieldType::Other && !f.path.starts_with('_')
                })
                .collect(),
            Some(pattern) if pattern.contains('*') => self
                .fields
                .iter()
                .filter(|f| f.indexed && !f.path.starts_with('_') && glob_match(pattern, &f.path))
                .collect(),
            Some(name) => self.field(name).filter(|f| f.indexed).into_iter().collect(),
        }
    }

    /// The fields `_exists_:name` looks at: the field, or every field under
    /// an object, or every field a pattern matches.
    pub fn exists_fields(&self, name: &str) -> Vec<&MappedField> {
        if name.contains('*') {
            return self
                .fields
                .iter()
                .filter(|f| glob_match(name, &f.path))
                .collect();
        }
        if self.objects.contains(name) {
            let prefix = format!("{name}.");
            return self
                .fields
                .iter()
                .filter(|f| f.path.starts_with(&prefix))
                .collect();
        }
        self.field(name).into_iter().collect()
    }

    /// The fields to list to users: record fields with their declared type,
    /// multi-fields folded into their parent.
    pub fn listed(&self) -> impl Iterator<Item = &MappedField> {
        self.fields.iter().filter(|f| !f.is_multi_field())
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn read_field(
    path: &str,
    source: &str,
    declared: &str,
    definition: &Map<String, Value>,
) -> Result<MappedField, String> {
    let mut unsupported = None;
    let field_type = match declared {
        "text" | "match_only_text" => {
            for key in ["analyzer", "search_analyzer"] {
                if let Some(analyzer) = definition.get(key).and_then(Value::as_str) {
                    if analyzer != "standard" {
                        unsupported = Some(format!(
                            "field `{path}`: analyzer `{analyzer}` is not supported (only `standard`)"
                        ));
                    }
                }
            }
            FieldType::Text
        }
        "keyword" | "constant_keyword" | "wildcard" => {
            let lowercase = match definition.get("normalizer").and_then(Value::as_str) {
                None => false,
                Some("lowercase") => true,
                Some(other) => {
                    unsupported = Some(format!(
                        "field `{path}`: normalizer `{other}` is not supported (only `lowercase`)"
                    ));
                    false
                }
            };
            let ignore_above = match definition.get("ignore_above") {
                None => None,
                Some(value) => Some(
                    value
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            format!("field `{path}`: `ignore_above` must be a whole number")
                        })?,
                ),
            };
            FieldType::Keyword {
                lowercase,
                ignore_above,
            }
        }
        "long" | "integer" | "short" | "byte" | "unsigned_long" => FieldType::Long,
        "double" | "float" | "half_float" | "scaled_float" => FieldType::Double,
        "date" | "date_nanos" => FieldType::Date,
        "boolean" => FieldType::Boolean,
        _ => FieldType::Other,
    };
    let indexed = !matches!(definition.get("index"), Some(Value::Bool(false)));
    Ok(MappedField {
        path: path.to_owned(),
        source: source.to_owned(),
        field_type,
        declared: declared.to_owned(),
        indexed,
        unsupported,
    })
}

fn first_scalar(value: &Value) -> Option<&Value> {
    match value {
        Value::Array(values) => values.iter().find_map(first_scalar),
        Value::Null | Value::Object(_) => None,
        scalar => Some(scalar),
    }
}

/// Elasticsearch's dynamic mapping for a new field's first value: a string
/// that reads as a date is a `date`, any other string `text` with a
/// `keyword` sub-field (`ignore_above: 256`); whole numbers `long`;
/// decimals `float` (single precision, as Elasticsearch keeps them);
/// booleans `boolean`.
pub fn dynamic_fields(path: &str, first: &Value) -> Vec<MappedField> {
    let field = |path: String, field_type: FieldType, declared: &str| MappedField {
        source: path.clone(),
        path,
        field_type,
        declared: declared.to_owned(),
        indexed: true,
        unsupported: None,
    };
    match first {
        Value::Bool(_) => vec![field(path.to_owned(), FieldType::Boolean, "boolean")],
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            vec![field(path.to_owned(), FieldType::Long, "long")]
        }
        Value::Number(_) => vec![field(path.to_owned(), FieldType::Double, "float")],
        Value::String(s) if is_dynamic_date(s) => {
            vec![field(path.to_owned(), FieldType::Date, "date")]
        }
        Value::String(_) => vec![
            field(path.to_owned(), FieldType::Text, "text"),
            MappedField {
                path: format!("{path}.keyword"),
                source: path.to_owned(),
                field_type: FieldType::Keyword {
                    lowercase: false,
                    ignore_above: Some(256),
                },
                declared: "keyword".to_owned(),
                indexed: true,
                unsupported: None,
            },
        ],
        _ => Vec::new(),
    }
}

/// Date detection: `strict_date_optional_time`, `yyyy/MM/dd HH:mm:ss Z` or
/// `yyyy/MM/dd Z` — here the first, which covers ISO 8601 dates (and, as in
/// Elasticsearch, a string holding only a year, such as `"2024"`).
fn is_dynamic_date(text: &str) -> bool {
    crate::date::parse_optional_time(text, false).is_some()
}

/// `*` matches any run of characters; everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(split) => split,
        None => return text.is_empty(),
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_an_index_body() {
        let mapping = Mapping::from_json(&json!({
            "settings": {"number_of_shards": 1},
            "mappings": {"dynamic": "strict", "properties": {
                "user": {"properties": {
                    "name": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
                    "screen_name": {"type": "keyword", "normalizer": "lowercase"},
                    "followers": {"type": "integer"}
                }},
                "at": {"type": "date"},
                "where": {"type": "geo_point"}
            }}
        }))
        .unwrap();
        assert_eq!(mapping.dynamic, Dynamic::Strict);
        let paths: Vec<_> = mapping.fields().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "at",
                "user.followers",
                "user.name",
                "user.name.keyword",
                "user.screen_name",
                "where"
            ]
        );
        let keyword = mapping.field("user.name.keyword").unwrap();
        assert_eq!(keyword.source, "user.name");
        assert_eq!(
            keyword.field_type,
            FieldType::Keyword {
                lowercase: false,
                ignore_above: Some(256)
            }
        );
        assert_eq!(
            mapping.field("user.followers").unwrap().field_type,
            FieldType::Long
        );
        assert_eq!(mapping.resolve(None).len(), 5);
        assert_eq!(mapping.resolve(Some("user.*")).len(), 4);
        assert_eq!(mapping.exists_fields("user").len(), 4);
        assert!(mapping.resolve(Some("nope")).is_empty());
        let listed: Vec<_> = mapping
            .listed()
            .map(|f| (f.path.as_str(), f.declared.as_str()))
            .collect();
        assert!(listed.contains(&("user.followers", "integer")));
        assert!(!listed.iter().any(|(p, _)| *p == "user.name.keyword"));
    }

    #[test]
    fn infers_like_dynamic_mapping() {
        let records = [
            json!({"n": 1, "x": 1.5, "ok": true, "at": "2024-01-02T03:04:05Z", "who": "Ann", "day": "2024-02-02", "code": "2024"}),
        ];
        let flat: Vec<Map<String, Value>> = records
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect();
        let mut mapping = Mapping::default();
        mapping.add_dynamic(&flat).unwrap();
        let types: Vec<_> = mapping
            .fields()
            .iter()
            .map(|f| (f.path.as_str(), f.declared.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("at", "date"),
                ("code", "date"),
                ("day", "date"),
                ("n", "long"),
                ("ok", "boolean"),
                ("who", "text"),
                ("who.keyword", "keyword"),
                ("x", "float")
            ]
        );
        let mut strict = Mapping {
            dynamic: Dynamic::Strict,
            ..Mapping::default()
        };
        assert!(strict.add_dynamic(&flat).is_err());
    }

    #[test]
    fn analysis_it_cannot_reproduce_is_named_not_refused() {
        let mapping = Mapping::from_json(&json!({"properties": {
            "body": {"type": "text", "analyzer": "english"},
            "tag": {"type": "keyword", "normalizer": "lowercase"}
        }}))
        .unwrap();
        assert_eq!(
            mapping.unsupported(),
            Some("field `body`: analyzer `english` is not supported (only `standard`)")
        );
        assert_eq!(mapping.listed().count(), 2);
    }

    #[test]
    fn globs() {
        assert!(glob_match("user.*", "user.name"));
        assert!(glob_match("*name", "user.name"));
        assert!(glob_match("u*r.n*e", "user.name"));
        assert!(!glob_match("user.*", "users"));
        assert!(glob_match("*", "x"));
    }
}
