//! Making a record's indexed form ([`IndexedDoc`]) and its tantivy document.

use super::*;
use crate::indexed::{Indexed, IndexedDoc};
use tributary_query::value;

impl EmbeddedIndex {
    /// A flattened record's indexed form, at `row`.
    pub(super) fn indexed_doc(
        &self,
        row: usize,
        id: Option<String>,
        record: &Map<String, Value>,
    ) -> IndexedDoc {
        let mut doc = IndexedDoc {
            row,
            id,
            replaces: None,
            values: Vec::new(),
            exists: Vec::new(),
            columns: Vec::new(),
        };
        for (mapped, field) in &self.indexed {
            let Some(value) = record.get(&mapped.source) else {
                continue;
            };
            let scalars = scalars(value);
            if let Some(values) = indexed_values(mapped, &scalars) {
                doc.values.push((*field, values));
                doc.exists.push(mapped.path.clone());
            }
            if let Some((column, _)) = self.value_columns.get(&mapped.path) {
                let mut seen: Vec<String> = Vec::with_capacity(scalars.len());
                for text in scalars.iter().filter_map(|v| scalar_text(v)) {
                    if !seen.contains(&text) {
                        seen.push(text);
                    }
                }
                doc.columns.push((*column, seen));
            }
        }
        doc
    }
}

impl EmbeddedIndex {
    /// The tantivy document of a record's indexed form.
    /// The tantivy document of a record's indexed form (its words moved in).
    pub(super) fn tantivy_doc(&self, indexed: IndexedDoc) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.row_field, indexed.row as u64);
        for (field, values) in indexed.values {
            match values {
                Indexed::Tokens(tokens) => doc.add_pre_tokenized_text(
                    field,
                    PreTokenizedString {
                        text: String::new(),
                        tokens: tokens
                            .into_iter()
                            .map(|(position, word)| Token {
                                offset_from: 0,
                                offset_to: 0,
                                position: position as usize,
                                text: word,
                                position_length: 1,
                            })
                            .collect(),
                    },
                ),
                Indexed::Keywords(values) => {
                    for value in values {
                        doc.add_pre_tokenized_text(field, whole_token(value));
                    }
                }
                Indexed::I64(values) => {
                    for n in values {
                        doc.add_i64(field, n);
                    }
                }
                Indexed::F64(values) => {
                    for n in values {
                        doc.add_f64(field, n);
                    }
                }
                Indexed::Bool(values) => {
                    for b in values {
                        doc.add_bool(field, b);
                    }
                }
            }
        }
        for path in indexed.exists {
            doc.add_pre_tokenized_text(self.index_fields.exists, whole_token(path));
        }
        for (column, values) in &indexed.columns {
            for value in values {
                doc.add_text(*column, value);
            }
        }
        if let Some(id) = indexed.id {
            doc.add_pre_tokenized_text(self.id_term, whole_token(id));
        }
        doc
    }
}

/// One field's values as its type says; values that do not fit the type (a
/// word in a number field) are skipped, as Elasticsearch's
/// `ignore_malformed` would. `None` when no value is indexed.
fn indexed_values(mapped: &MappedField, values: &[&Value]) -> Option<Indexed> {
    let field_type = &mapped.field_type;
    let indexed = match field_type {
        FieldType::Text => {
            // All values in one token stream, `POSITION_GAP` apart.
            let mut tokens = Vec::new();
            let mut position = 0;
            let mut any = false;
            for value in values {
                let Some(text) = scalar_text(value) else {
                    continue;
                };
                any = true;
                let words = analysis::tokens(&text);
                let count = words.len();
                tokens.extend(
                    words
                        .into_iter()
                        .enumerate()
                        .map(|(i, word)| ((position + i) as u32, word)),
                );
                position += count + POSITION_GAP;
            }
            return any.then_some(Indexed::Tokens(tokens));
        }
        FieldType::Keyword {
            lowercase,
            ignore_above,
        } => Indexed::Keywords(
            values
                .iter()
                .filter_map(|value| scalar_text(value))
                .filter(|text| !ignore_above.is_some_and(|limit| text.chars().count() > limit))
                .map(|text| {
                    if *lowercase {
                        analysis::lowercase(&text)
                    } else {
                        text
                    }
                })
                .collect(),
        ),
        FieldType::Long => Indexed::I64(values.iter().filter_map(|v| long_value(v)).collect()),
        FieldType::Double => Indexed::F64(
            values
                .iter()
                .filter_map(|v| double_value(v))
                .map(|v| value::indexed_decimal(mapped, v))
                .collect(),
        ),
        FieldType::Date => Indexed::I64(values.iter().filter_map(|v| date_value(v)).collect()),
        FieldType::Boolean => Indexed::Bool(values.iter().filter_map(|v| bool_value(v)).collect()),
        FieldType::Other => return None,
    };
    let empty = match &indexed {
        Indexed::Tokens(_) => false,
        Indexed::Keywords(v) => v.is_empty(),
        Indexed::I64(v) => v.is_empty(),
        Indexed::F64(v) => v.is_empty(),
        Indexed::Bool(v) => v.is_empty(),
    };
    (!empty).then_some(indexed)
}

/// A value indexed whole, as one token (keywords, paths, ids).
pub(super) fn whole_token(text: String) -> PreTokenizedString {
    PreTokenizedString {
        tokens: vec![Token {
            offset_from: 0,
            offset_to: text.len(),
            position: 0,
            text: text.clone(),
            position_length: 1,
        }],
        text,
    }
}
