//! Expanding from the index: values next to selected ones, counted over
//! every record holding them (by the value columns' aggregations, or by
//! reading the records), and the values of a field like a hint.

use super::*;

impl EmbeddedIndex {
    /// Counts an expansion over every record holding the selection: with
    /// tantivy's `terms` aggregation over the value columns when every
    /// field involved is a keyword, else by reading the records' fields.
    pub(crate) fn expand(
        &self,
        query: &ExpandQuery,
        budget: &Budget,
    ) -> Result<Expansion, DatasourceError> {
        // Aggregations read the index alone: published records join it first.
        self.settle();
        if let Some(found) = self.expand_by_terms(query, budget)? {
            return Ok(found);
        }
        self.expand_by_reading(query, budget)
    }

    /// tantivy's `terms` aggregation per field over the records holding the
    /// selection, and again over those holding each selected value (the
    /// connections); in `significant` mode JLH against each value's
    /// document frequency in the index (as Lucene's `significant_terms`).
    /// `None` when a field is not a keyword column.
    pub(super) fn expand_by_terms(
        &self,
        query: &ExpandQuery,
        budget: &Budget,
    ) -> Result<Option<Expansion>, DatasourceError> {
        let columns: Option<Vec<&str>> = query
            .fields
            .iter()
            .map(|f| self.value_columns.get(f).map(|(_, name)| name.as_str()))
            .collect();
        let Some(columns) = columns else {
            return Ok(None);
        };
        let selection_is_keywords = query
            .selected
            .iter()
            .flat_map(|s| s.fields.iter())
            .all(|f| self.value_columns.contains_key(f));
        if !selection_is_keywords {
            return Ok(None);
        }
        let Snapshot { searcher, rows, .. } = self.snapshot();
        // Every value (up to the bucket limit): `significant` mode does not
        // rank by count, and either mode says how many new values there
        // are beyond the `size` kept ("10 of 34").
        let size = TERMS_BUCKETS;
        let counts = |text: &str, include: &[Vec<String>]| {
            let aggregations = terms_aggregations(&columns, size, include)?;
            self.count_terms(&searcher, text, aggregations, columns.len(), budget)
        };
        let (matching, all) = counts(&selection_query(query), &[])?;
        let new = |field: &str, value: &str| {
            !query.exclude.contains(&FieldValue::new(field, value))
                && !query.selected.iter().any(|s| s.is(field, value))
        };
        let mut found: BTreeMap<FieldValue, u64> = BTreeMap::new();
        for (field, buckets) in query.fields.iter().zip(all) {
            for (value, count) in buckets {
                if new(field, &value) {
                    found.insert(FieldValue::new(field.clone(), value), count);
                }
            }
        }
        let total = searcher.num_docs();
        let weight = |value: &FieldValue, count: u64| match query.mode {
            ExpandMode::Significant if matching > 0 && total > 0 => jlh(
                count,
                matching,
                self.background_frequency(&searcher, value).max(count),
                total,
            ),
            _ => count as f64,
        };
        // The values kept, then their records with each selected value: a
        // search per selected value, aggregating only those values.
        let kept = rank_expansion(query, &found, BTreeMap::new(), weight).vertices;
        let include: Vec<Vec<String>> = query
            .fields
            .iter()
            .map(|field| {
                kept.iter()
                    .filter(|v| &v.field == field)
                    .map(|v| v.value.clone())
                    .collect()
            })
            .collect();
        let mut pairs: BTreeMap<(FieldValue, FieldValue), u64> = BTreeMap::new();
        if !kept.is_empty() {
            for selected in &query.selected {
                let one = ExpandQuery {
                    selected: vec![selected.clone()],
                    ..query.clone()
                };
                let (_, each) = counts(&selection_query(&one), &include)?;
                for (field, buckets) in query.fields.iter().zip(each) {
                    for (value, count) in buckets {
                        let to = FieldValue::new(field.clone(), value);
                        pairs.insert((selected.value.clone(), to), count);
                    }
                }
            }
        }
        let mut expansion = rank_expansion(query, &found, pairs, weight);
        expansion.method = match query.mode {
            ExpandMode::Count => format!("terms aggregation: all {matching} matching records counted"),
            ExpandMode::Significant => format!(
                "significant terms (JLH): all {matching} matching records against all {rows} records"
            ),
        };
        Ok(Some(expansion))
    }

    /// How many records `text` finds, and per field (aggregation `f{i}` of
    /// `fields` columns) its values and their records.
    fn count_terms(
        &self,
        searcher: &tantivy::Searcher,
        text: &str,
        aggregations: tantivy::aggregation::agg_req::Aggregations,
        fields: usize,
        budget: &Budget,
    ) -> Result<(u64, Vec<FieldCounts>), DatasourceError> {
        let parsed =
            tributary_query::parse(text).map_err(|e| DatasourceError::bad_query(e.to_string()))?;
        let mut compiler = Compiler::new(&self.mapping, &self.index_fields, searcher, budget);
        let Some(compiled) = compiler.compile(&parsed)? else {
            return Ok((0, vec![Vec::new(); fields]));
        };
        let limits = tantivy::aggregation::AggregationLimitsGuard::new(
            Some(TERMS_MEMORY),
            Some((TERMS_BUCKETS * fields) as u32 + 1),
        );
        let context =
            tantivy::aggregation::AggContextParams::new(limits, self.index.tokenizers().clone());
        let collector =
            tantivy::aggregation::AggregationCollector::from_aggs(aggregations, context);
        let (matching, results) = searcher
            .search(&compiled, &(Count, collector))
            .map_err(|e| self.internal(e))?;
        budget.check()?;
        let results = serde_json::to_value(results)
            .map_err(|_| DatasourceError::unavailable("the expansion's counts were unreadable"))?;
        let buckets = (0..fields)
            .map(|i| {
                results[format!("f{i}")]["buckets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| Some((b["key"].as_str()?.to_owned(), b["doc_count"].as_u64()?)))
                    .collect()
            })
            .collect();
        Ok((matching as u64, buckets))
    }

    /// How many records of the whole index hold `value` (its term as the
    /// keyword field indexes it: lowercased by a normalizer).
    fn background_frequency(&self, searcher: &tantivy::Searcher, value: &FieldValue) -> u64 {
        let Some(field) = self.index_fields.by_path.get(&value.field) else {
            return 0;
        };
        let lowercase = matches!(
            self.mapping.field(&value.field).map(|m| &m.field_type),
            Some(FieldType::Keyword {
                lowercase: true,
                ..
            })
        );
        let text = if lowercase {
            analysis::lowercase(&value.value)
        } else {
            value.value.clone()
        };
        searcher
            .doc_freq(&tantivy::Term::from_field_text(*field, &text))
            .unwrap_or(0)
    }

    /// Counts an expansion by reading the fields of every record holding
    /// the selection; in `significant` mode against every record's values.
    pub(super) fn expand_by_reading(
        &self,
        query: &ExpandQuery,
        budget: &Budget,
    ) -> Result<Expansion, DatasourceError> {
        let all = SearchQuery {
            query: selection_query(query),
            from: 0,
            size: u64::MAX,
        };
        let page = self.search_rows(&all, budget)?;
        // Only the fields the expansion reads are decoded.
        let mut wanted: BTreeSet<&str> = query.fields.iter().map(String::as_str).collect();
        wanted.extend(
            query
                .selected
                .iter()
                .flat_map(|s| s.fields.iter().map(String::as_str)),
        );
        let records = self.field_maps(&page.rows, &wanted);
        budget.check()?;
        let background = match query.mode {
            ExpandMode::Count => None,
            ExpandMode::Significant => {
                let mut counts: HashMap<FieldValue, u64> = HashMap::new();
                for field in &query.fields {
                    for (value, n) in self.background(field, page.seen, budget)?.iter() {
                        counts.insert(FieldValue::new(field.clone(), value.clone()), *n);
                    }
                }
                Some((counts, page.seen as u64))
            }
        };
        let mut found = count_expansion(
            query,
            &records,
            background.as_ref().map(|(counts, total)| (counts, *total)),
        );
        found.method = match query.mode {
            ExpandMode::Count => format!("terms: all {} matching records counted", records.len()),
            ExpandMode::Significant => format!(
                "significant terms (JLH): all {} matching records against all {} records",
                records.len(),
                page.seen
            ),
        };
        Ok(found)
    }

    /// Up to `limit` distinct values of `field` holding `hint`'s characters
    /// in order, from the field's value counts (kept until the datasource
    /// grows, as for `significant` expansions).
    pub(crate) fn values_like(
        &self,
        field: &str,
        hint: &Subsequence,
        limit: usize,
        budget: &Budget,
    ) -> Result<Vec<String>, DatasourceError> {
        self.settle();
        let counts = self.background(field, self.visible_rows(), budget)?;
        let mut values: Vec<String> = counts
            .keys()
            .filter(|value| hint.matches(value))
            .cloned()
            .collect();
        // The same answer every time, whatever the map's order.
        values.sort_unstable();
        values.truncate(limit);
        Ok(values)
    }

    /// The records of `rows` with only the `wanted` fields decoded (each
    /// record's other fields are skipped over, not built).
    pub(super) fn field_maps(
        &self,
        rows: &[u32],
        wanted: &BTreeSet<&str>,
    ) -> Vec<Map<String, Value>> {
        let records = self.read_records();
        rows.iter()
            .filter_map(|&row| records.get(row as usize))
            .map(|record| {
                let text = record.fields.get();
                match serde_json::from_str::<HashMap<&str, &serde_json::value::RawValue>>(text) {
                    Ok(all) => wanted
                        .iter()
                        .filter_map(|field| {
                            let raw = all.get(field)?;
                            let value = serde_json::from_str(raw.get()).ok()?;
                            Some(((*field).to_owned(), value))
                        })
                        .collect(),
                    // A key with escapes cannot be borrowed: decode it all.
                    Err(_) => serde_json::from_str(text).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// How many of the first `rows` records hold each value of `field`,
    /// counted once and kept until the datasource grows.
    pub(super) fn background(
        &self,
        field: &str,
        rows: usize,
        budget: &Budget,
    ) -> Result<Arc<ValueCounts>, DatasourceError> {
        if let Some((at, counts)) = lock(&self.backgrounds).get(field) {
            if *at == rows {
                return Ok(Arc::clone(counts));
            }
        }
        let wanted = BTreeSet::from([field]);
        let mut counts: HashMap<String, u64> = HashMap::new();
        let replaced = self.snapshot().replaced;
        let all: Vec<u32> = (0..rows)
            .filter(|&row| !replaced.contains(row))
            .map(|row| row as u32)
            .collect();
        for chunk in all.chunks(10_000) {
            for record in self.field_maps(chunk, &wanted) {
                let values: BTreeSet<String> = values_of(&record, field).into_iter().collect();
                for value in values {
                    *counts.entry(value).or_default() += 1;
                }
            }
            budget.check()?;
        }
        let counts = Arc::new(counts);
        lock(&self.backgrounds).insert(field.to_owned(), (rows, Arc::clone(&counts)));
        Ok(counts)
    }
}

/// Per field `i` (key `f{i}`) of `columns`: its `terms` aggregation, `size`
/// values, or only those of `include[i]` when given.
fn terms_aggregations(
    columns: &[&str],
    size: usize,
    include: &[Vec<String>],
) -> Result<tantivy::aggregation::agg_req::Aggregations, DatasourceError> {
    let mut aggregations = serde_json::Map::new();
    for (i, column) in columns.iter().enumerate() {
        let mut terms = serde_json::json!({"field": column, "size": size, "segment_size": size, "min_doc_count": 1});
        if let Some(values) = include.get(i) {
            if values.is_empty() {
                continue;
            }
            terms["include"] = serde_json::json!(values);
            terms["size"] = serde_json::json!(values.len());
        }
        aggregations.insert(format!("f{i}"), serde_json::json!({ "terms": terms }));
    }
    serde_json::from_value(Value::Object(aggregations))
        .map_err(|_| DatasourceError::unavailable("the expansion could not be built"))
}
