//! What a table (or a `SELECT`) offers: its columns read from PostgreSQL's
//! catalog, typed as tributary types them, with the SQL that reads each
//! one. Keys of `json`/`jsonb` columns become dotted fields (from a sample
//! of rows), so `user.screen_name` is a field like any other.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};
use tokio_postgres::types::{Kind, Type};
use tokio_postgres::GenericClient;
use tributary_datasource::Field;
use tributary_query::mapping::glob_match;
use tributary_query::Mapping;

use super::{Relation, SqlError};

/// Rows read to learn the keys of json columns.
const JSON_SAMPLE_ROWS: i64 = 200;

/// How one field's values are read.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The SQL of the raw value: a column (`t."c"`) or a path in a jsonb
    /// column (`(t."c" #> '{a,b}')`).
    raw: String,
    /// The raw value is jsonb: a scalar, or (`array`) a list of them.
    json: bool,
    /// A native array column (`text[]`), or a json key holding lists.
    array: bool,
    class: Class,
}

/// What a value is compared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Text, or a type read as its text (`uuid`, `citext`, `text` in json).
    Text {
        cast: bool,
    },
    Number,
    Bool,
    /// Compared as milliseconds since the epoch.
    Date,
    Other,
}

impl Column {
    /// A condition holding when `condition` holds for the value, or for any
    /// value of a list; `alias` names the list's rows.
    pub fn any(&self, alias: &str, condition: impl Fn(&str) -> String) -> String {
        if self.json && self.array {
            let raw = &self.raw;
            format!(
                "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof({raw}) = 'array' THEN {raw} ELSE jsonb_build_array({raw}) END) AS {alias}(v) WHERE {})",
                condition(&self.typed(&format!("{alias}.v")))
            )
        } else if self.array {
            format!(
                "EXISTS (SELECT 1 FROM unnest({}) AS {alias}(v) WHERE {})",
                self.raw,
                condition(&self.typed(&format!("{alias}.v")))
            )
        } else {
            condition(&self.typed(&self.raw))
        }
    }

    /// The value as the conditions compare it.
    fn typed(&self, value: &str) -> String {
        match (self.json, self.class) {
            (false, Class::Text { cast: true }) => format!("({value})::text"),
            (false, Class::Date) => format!("(extract(epoch from {value}) * 1000)"),
            (false, _) => value.to_owned(),
            (true, Class::Number) => format!(
                "(CASE WHEN jsonb_typeof({value}) = 'number' THEN ({value} #>> '{{}}')::numeric END)"
            ),
            (true, Class::Bool) => format!(
                "(CASE WHEN jsonb_typeof({value}) = 'boolean' THEN ({value} #>> '{{}}')::boolean END)"
            ),
            (true, _) => format!("({value} #>> '{{}}')"),
        }
    }

    /// The value, or each value of a list, as text: a sub-query yielding one
    /// row per distinct value (`SELECT DISTINCT …`), for counting.
    pub fn values(&self) -> String {
        let raw = &self.raw;
        if self.json && self.array {
            format!("SELECT DISTINCT jsonb_array_elements_text(CASE WHEN jsonb_typeof({raw}) = 'array' THEN {raw} ELSE jsonb_build_array({raw}) END)")
        } else if self.array {
            format!("SELECT DISTINCT u.v::text FROM unnest({raw}) AS u(v)")
        } else if self.json {
            format!("SELECT {raw} #>> '{{}}'")
        } else {
            format!("SELECT ({raw})::text")
        }
    }

    /// A native text array as one lowercased array (`lower(col::text)::text[]`),
    /// for containment tests.
    pub fn lowercase_array(&self) -> Option<String> {
        (self.array && !self.json && matches!(self.class, Class::Text { .. }))
            .then(|| format!("(lower(({})::text)::text[])", self.raw))
    }

    /// `_exists_`: the value is there and, for a list, not empty.
    pub fn exists(&self) -> String {
        let raw = &self.raw;
        if self.json {
            format!("COALESCE(CASE jsonb_typeof({raw}) WHEN 'array' THEN jsonb_array_length({raw}) > 0 ELSE jsonb_typeof({raw}) <> 'null' END, FALSE)")
        } else if self.array {
            format!("COALESCE(cardinality({raw}) > 0, FALSE)")
        } else {
            format!("({raw} IS NOT NULL)")
        }
    }
}

/// The catalog of one datasource.
#[derive(Debug)]
pub struct Catalog {
    /// The fields as the query crate resolves them.
    pub mapping: Mapping,
    /// Path → how to read it.
    pub columns: HashMap<String, Column>,
    /// What `FIELDS_RECEIVE` lists.
    pub listed: Vec<Field>,
    /// The top-level columns results include.
    pub result_columns: Vec<String>,
    /// The `fields` option: which paths are offered and returned (`None`: all).
    offered: Option<Vec<String>>,
    /// The id column: its SQL and its type (for keyset bounds).
    pub id: Typed,
    /// The column live polling follows, if any.
    pub live_field: Option<Typed>,
    /// `levenshtein_less_equal` (the `fuzzystrmatch` extension) is there.
    pub fuzzy: bool,
    /// Where a term without a field is searched: a field, a pattern or `*`.
    pub default_field: String,
}

/// A column's SQL and its type's name, for casting text to it.
#[derive(Debug, Clone)]
pub struct Typed {
    pub sql: String,
    pub type_name: String,
}

impl Typed {
    /// `$n` (text) cast to this column's type.
    pub fn cast(&self, placeholder: &str) -> String {
        format!("({placeholder})::{}", self.type_name)
    }
}

/// What the config says about columns.
pub struct ColumnOptions<'a> {
    pub id_column: Option<&'a str>,
    pub fields: Option<&'a [String]>,
    pub text_columns: Option<&'a [String]>,
    pub live_field: Option<&'a str>,
    pub default_field: &'a str,
}

/// `"name"`, with quotes inside doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with quotes inside doubled (for catalog names only).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Catalog {
    pub async fn load(
        client: &impl GenericClient,
        relation: &Relation,
        options: &ColumnOptions<'_>,
    ) -> Result<Catalog, SqlError> {
        let from = relation.from_clause();
        let statement = client
            .prepare(&format!("SELECT * FROM {from} LIMIT 0"))
            .await?;
        let columns: Vec<(String, Type)> = statement
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.type_().clone()))
            .collect();
        let id_name = match options.id_column {
            Some(name) => name.to_owned(),
            None => primary_key(client, relation).await?,
        };
        let column_type = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let typed = |name: &str, key: &str| -> Result<Typed, SqlError> {
            let ty = column_type(name).ok_or_else(|| {
                SqlError::Config(format!("key `{key}`: there is no column `{name}`"))
            })?;
            Ok(Typed {
                sql: format!("t.{}", quote_ident(name)),
                type_name: type_name(ty),
            })
        };
        let id = typed(&id_name, "id_column")?;
        let live_field = options
            .live_field
            .map(|name| typed(name, "live_field"))
            .transpose()?;
        let fuzzy: bool = client
            .query_one(
                "SELECT to_regprocedure('levenshtein_less_equal(text,text,integer)') IS NOT NULL",
                &[],
            )
            .await?
            .try_get(0)?;

        let mut catalog = Catalog {
            mapping: Mapping::default(),
            columns: HashMap::new(),
            listed: Vec::new(),
            result_columns: Vec::new(),
            offered: options.fields.map(<[String]>::to_vec),
            id,
            live_field,
            fuzzy,
            default_field: options.default_field.to_owned(),
        };
        let mut properties = Map::new();
        for (name, ty) in &columns {
            let (element, array) = match ty.kind() {
                Kind::Array(element) => (element, true),
                _ => (ty, false),
            };
            let raw = format!("t.{}", quote_ident(name));
            if matches!(*element, Type::JSON | Type::JSONB) {
                let keys = json_keys(client, &from, &raw).await?;
                let jsonb = if *element == Type::JSON {
                    format!("{raw}::jsonb")
                } else {
                    raw
                };
                if let Some(object) = catalog.add_json_keys(name, &jsonb, keys, options) {
                    catalog.result_columns.push(name.clone());
                    properties.insert(name.clone(), json!({"properties": object}));
                }
            } else if is_offered(options.fields, name) {
                let declared = catalog.add_column(name, raw, element, array, options);
                properties.insert(name.clone(), mapping_entry(&declared));
            }
        }
        catalog.mapping = Mapping::from_json(&json!({"properties": properties}))
            .map_err(|e| SqlError::Config(format!("the columns cannot be mapped: {e}")))?;
        // A multi-field (`title.keyword`) reads its parent's value.
        for field in catalog.mapping.fields() {
            if field.is_multi_field() {
                if let Some(parent) = catalog.columns.get(&field.source).cloned() {
                    catalog.columns.insert(field.path.clone(), parent);
                }
            }
        }
        catalog.listed.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(catalog)
    }
}

impl Catalog {
    /// Adds the offered keys (as the sample found them) of the JSON column
    /// `name`, read as `jsonb`: each a field of its own; their mapping, if any.
    fn add_json_keys(
        &mut self,
        name: &str,
        jsonb: &str,
        keys: BTreeMap<Vec<String>, (JsonKind, bool)>,
        options: &ColumnOptions<'_>,
    ) -> Option<Map<String, Value>> {
        let mut object = Map::new();
        for (key_path, (kind, lists)) in keys {
            let path = format!("{name}.{}", key_path.join("."));
            if !is_offered(options.fields, &path) {
                continue;
            }
            let (declared, class) = match kind {
                JsonKind::String if is_text(options, &path) => {
                    ("text", Class::Text { cast: false })
                }
                JsonKind::String => ("keyword", Class::Text { cast: false }),
                JsonKind::Long => ("long", Class::Number),
                JsonKind::Double => ("double", Class::Number),
                JsonKind::Bool => ("boolean", Class::Bool),
            };
            let literal = key_path
                .iter()
                .map(|k| format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect::<Vec<_>>()
                .join(",");
            self.columns.insert(
                path.clone(),
                Column {
                    raw: format!("({jsonb} #> {})", quote_literal(&format!("{{{literal}}}"))),
                    json: true,
                    // A key the sample only saw holding single values
                    // is read as one (which an expression index can serve).
                    array: lists,
                    class,
                },
            );
            insert_property(&mut object, &key_path, mapping_entry(declared));
            self.listed.push(Field::new(path, declared));
        }
        (!object.is_empty()).then_some(object)
    }

    /// Adds the column `name` of type `element` (an array of them when
    /// `array`) as a field; its declared type.
    fn add_column(
        &mut self,
        name: &str,
        raw: String,
        element: &Type,
        array: bool,
        options: &ColumnOptions<'_>,
    ) -> String {
        let text_or_keyword = || {
            if is_text(options, name) {
                "text"
            } else {
                "keyword"
            }
            .to_owned()
        };
        let (declared, class): (String, Class) = match *element {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => (
                text_or_keyword(),
                Class::Text {
                    cast: *element == Type::BPCHAR,
                },
            ),
            Type::UUID => ("keyword".into(), Class::Text { cast: true }),
            Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => ("long".into(), Class::Number),
            Type::NUMERIC | Type::FLOAT4 | Type::FLOAT8 => ("double".into(), Class::Number),
            Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::DATE => ("date".into(), Class::Date),
            Type::BOOL => ("boolean".into(), Class::Bool),
            _ if element.name() == "citext" => (text_or_keyword(), Class::Text { cast: true }),
            _ => (element.name().to_owned(), Class::Other),
        };
        self.columns.insert(
            name.to_owned(),
            Column {
                raw,
                json: false,
                array,
                class,
            },
        );
        self.result_columns.push(name.to_owned());
        self.listed.push(Field::new(name, declared.as_str()));
        declared
    }

    /// Is this (flattened) path of a result offered?
    pub fn shows(&self, path: &str) -> bool {
        is_offered(self.offered.as_deref(), path)
    }
}

/// Is `path` full text (`text`) rather than a `keyword`? Every string is,
/// unless `text_columns` lists which are.
fn is_text(options: &ColumnOptions<'_>, path: &str) -> bool {
    match options.text_columns {
        None => true,
        Some(names) => names.iter().any(|n| n == path),
    }
}

/// A path is offered when no `fields` are configured, or one of them names
/// it, a pattern matches it, or it lies under one (`user` offers `user.name`).
fn is_offered(fields: Option<&[String]>, path: &str) -> bool {
    match fields {
        None => true,
        Some(patterns) => patterns
            .iter()
            .any(|p| glob_match(p, path) || path.starts_with(&format!("{p}."))),
    }
}

/// The type's name as a cast writes it (`int8`, `"myschema"."mytype"`).
fn type_name(ty: &Type) -> String {
    match ty.schema() {
        "pg_catalog" | "public" | "" => match ty.kind() {
            Kind::Array(element) => format!("{}[]", type_name(element)),
            _ => quote_ident(ty.name()),
        },
        schema => format!("{}.{}", quote_ident(schema), quote_ident(ty.name())),
    }
}

/// The mapping entry for a declared type: strings that are not full-text
/// are keywords compared case-insensitively; full-text ones have a
/// `.keyword` sub-field.
fn mapping_entry(declared: &str) -> Value {
    match declared {
        "keyword" => json!({"type": "keyword", "normalizer": "lowercase"}),
        // As Elasticsearch maps strings: `x.keyword` holds the whole value, as written.
        "text" => {
            json!({"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}})
        }
        other => json!({"type": other}),
    }
}

fn insert_property(object: &mut Map<String, Value>, path: &[String], entry: Value) {
    match path {
        [] => {}
        [last] => {
            object.insert(last.clone(), entry);
        }
        [first, rest @ ..] => {
            let child = object
                .entry(first.clone())
                .or_insert_with(|| json!({"properties": {}}));
            if let Some(Value::Object(properties)) = child.get_mut("properties") {
                insert_property(properties, rest, entry);
            }
        }
    }
}

async fn primary_key(client: &impl GenericClient, relation: &Relation) -> Result<String, SqlError> {
    let Relation::Table(name) = relation else {
        return Err(SqlError::Config(
            "key `id_column`: a datasource defined by `sql` needs one (a column whose values are unique)".into(),
        ));
    };
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
            &[name],
        )
        .await?;
    match rows.as_slice() {
        [one] => Ok(one.try_get(0)?),
        [] => Err(SqlError::Config(format!(
            "key `id_column`: `{name}` has no primary key; name a column whose values are unique"
        ))),
        _ => Err(SqlError::Config(format!(
            "key `id_column`: the primary key of `{name}` has several columns; name one whose values are unique"
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonKind {
    String,
    Long,
    Double,
    Bool,
}

/// The scalar keys of a json column, as paths, each typed by its first
/// value (lists typed by their first element) and whether it held lists,
/// from a sample of rows.
async fn json_keys(
    client: &impl GenericClient,
    from: &str,
    raw: &str,
) -> Result<BTreeMap<Vec<String>, (JsonKind, bool)>, SqlError> {
    let rows = client
        .query(
            &format!(
                "SELECT {raw}::text FROM {from} WHERE {raw} IS NOT NULL LIMIT {JSON_SAMPLE_ROWS}"
            ),
            &[],
        )
        .await?;
    let mut keys = BTreeMap::new();
    for row in rows {
        let text: String = row.try_get(0)?;
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            collect_keys(&value, &mut Vec::new(), false, &mut keys);
        }
    }
    Ok(keys)
}

fn collect_keys(
    value: &Value,
    path: &mut Vec<String>,
    in_list: bool,
    keys: &mut BTreeMap<Vec<String>, (JsonKind, bool)>,
) {
    let kind = match value {
        Value::Object(_) if in_list => return,
        Value::Object(object) => {
            for (key, child) in object {
                path.push(key.clone());
                collect_keys(child, path, false, keys);
                path.pop();
            }
            return;
        }
        Value::Array(items) => {
            match items.iter().find(|v| !v.is_null()) {
                // Lists of objects are not searched by key.
                Some(Value::Object(_)) => {}
                Some(first) => collect_keys(first, path, true, keys),
                None => {
                    if let Some(entry) = keys.get_mut(path.as_slice()) {
                        entry.1 = true;
                    }
                }
            }
            return;
        }
        Value::Null => return,
        Value::String(_) => JsonKind::String,
        Value::Bool(_) => JsonKind::Bool,
        Value::Number(n) if n.is_i64() || n.is_u64() => JsonKind::Long,
        Value::Number(_) => JsonKind::Double,
    };
    if !path.is_empty() {
        keys.entry(path.clone()).or_insert((kind, in_list)).1 |= in_list;
    }
}
