//! Expansions in PostgreSQL: per field, one `GROUP BY` over the rows holding
//! the selection (the same parameterised conditions as a search), with a
//! `count(*) FILTER (…)` per selected value for the connections; in
//! `significant` mode one more count of the candidates over the whole table.

use std::collections::{BTreeSet, HashMap};

use tributary_datasource::{
    jlh, selection_query, Connection, DatasourceError, ExpandMode, ExpandQuery, Expansion,
    FieldValue, RequestContext, Subsequence, Vertex,
};

use super::sql::{self, Bound, Param};
use super::PostgresDatasource;

impl PostgresDatasource {
    pub(super) async fn expand_by_grouping(
        &self,
        request: &RequestContext,
        query: &ExpandQuery,
    ) -> Result<Expansion, DatasourceError> {
        let deadline = request.deadline;
        let catalog = self.catalog(deadline).await?;
        let from = self.relation.from_clause();
        let (holding, mut bound) =
            sql::translate(&catalog, &selection_query(query), Bound::default()).await?;
        // One condition per selected value, for its connections.
        let mut each = Vec::with_capacity(query.selected.len());
        for selected in &query.selected {
            let one = ExpandQuery {
                selected: vec![selected.clone()],
                ..query.clone()
            };
            let (condition, more) = sql::translate(&catalog, &selection_query(&one), bound).await?;
            bound = more;
            each.push(condition);
        }
        let filters: String = each
            .iter()
            .map(|condition| format!(", count(*) FILTER (WHERE {condition})"))
            .collect();
        // A statement binds exactly the parameters it uses: this one, only the selection's.
        let (holding_alone, count_bound) =
            sql::translate(&catalog, &selection_query(query), Bound::default()).await?;
        let matching_sql = format!("SELECT count(*) FROM {from} WHERE {holding_alone}");
        let matching: i64 = self
            .rows(deadline, &matching_sql, &count_bound, "count the selection")
            .await?
            .first()
            .and_then(|row| row.try_get(0).ok())
            .unwrap_or(0);
        let mut vertices = Vec::new();
        let mut connections = Vec::new();
        let mut available = std::collections::BTreeMap::new();
        for field in &query.fields {
            let Some(column) = catalog.columns.get(field) else {
                continue;
            };
            // Not new: excluded values and the selection itself.
            let mut skip: Vec<String> = query
                .exclude
                .iter()
                .filter(|v| &v.field == field)
                .map(|v| v.value.clone())
                .collect();
            for selected in &query.selected {
                if selected.fields.contains(field) {
                    skip.push(selected.value.value.clone());
                    skip.extend(selected.forms.iter().cloned());
                    if selected.lowercase {
                        skip.push(selected.value.value.to_lowercase());
                    }
                }
            }
            let mut field_bound = bound.clone();
            let skipped = field_bound.bind(Param::TextList(skip));
            let limit = field_bound.bind(Param::Long(query.size as i64 * 4 + 16));
            let sql = format!(
                "SELECT x.v, count(*){filters}, count(*) OVER () FROM {from} CROSS JOIN LATERAL ({}) AS x(v) \
                 WHERE ({holding}) AND x.v IS NOT NULL AND NOT (x.v = ANY({skipped})) \
                 GROUP BY x.v ORDER BY count(*) DESC, x.v LIMIT {limit}",
                column.values()
            );
            let rows = self
                .rows(deadline, &sql, &field_bound, "count the values")
                .await?;
            let mut found: Vec<(String, u64, Vec<u64>)> = Vec::new();
            // The window counts the groups before LIMIT: every new value.
            let distinct = rows
                .first()
                .and_then(|row| row.try_get::<_, i64>(2 + each.len()).ok())
                .unwrap_or(0)
                .max(0) as u64;
            let mut selection_in_other_case = 0;
            for row in rows {
                let value: String = row.try_get(0).map_err(|e| {
                    DatasourceError::unavailable(format!(
                        "PostgreSQL sent an unreadable count: {e}"
                    ))
                })?;
                let count = |i: usize| row.try_get::<_, i64>(i).unwrap_or(0).max(0) as u64;
                let per: Vec<u64> = (0..each.len()).map(|j| count(2 + j)).collect();
                // A lowercase link: the selection in other letters' case is not new either.
                let selected = query.selected.iter().any(|s| {
                    s.lowercase
                        && s.fields.contains(field)
                        && s.value.value.eq_ignore_ascii_case(&value)
                });
                if selected {
                    selection_in_other_case += 1;
                } else {
                    found.push((value, count(1), per));
                }
            }
            available.insert(
                field.clone(),
                distinct.saturating_sub(selection_in_other_case),
            );
            let weights = match query.mode {
                ExpandMode::Count => found.iter().map(|(_, n, _)| *n as f64).collect::<Vec<_>>(),
                ExpandMode::Significant => {
                    self.jlh_weights(
                        request,
                        &from,
                        column.values(),
                        &found,
                        matching.max(0) as u64,
                    )
                    .await?
                }
            };
            let mut ranked: Vec<(usize, f64)> = weights.into_iter().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(found[a.0].0.cmp(&found[b.0].0)));
            ranked.truncate(query.size);
            for (i, weight) in ranked {
                let (value, doc_count, per) = &found[i];
                vertices.push(Vertex {
                    field: field.clone(),
                    value: value.clone(),
                    doc_count: *doc_count,
                    weight,
                });
                for (j, n) in per.iter().enumerate().filter(|(_, n)| **n > 0) {
                    connections.push(Connection {
                        from: query.selected[j].value.clone(),
                        to: FieldValue::new(field.clone(), value.clone()),
                        doc_count: *n,
                        via: query.selected[j].via.clone(),
                    });
                }
            }
        }
        let method = match query.mode {
            ExpandMode::Count => "GROUP BY",
            ExpandMode::Significant => "GROUP BY, JLH against the whole table",
        };
        Ok(Expansion {
            vertices,
            connections,
            sampled: None,
            method: format!("{method}: all {matching} matching rows counted"),
            available,
        })
    }

    /// Up to `limit` distinct values of `field` holding `hint`'s characters
    /// in order: `LIKE` (`ILIKE` when case is ignored) over its values.
    pub(super) async fn values_like_by_pattern(
        &self,
        request: &RequestContext,
        field: &str,
        hint: &Subsequence,
        limit: usize,
    ) -> Result<Vec<String>, DatasourceError> {
        let catalog = self.catalog(request.deadline).await?;
        let Some(column) = catalog.columns.get(field) else {
            return Ok(Vec::new());
        };
        let from = self.relation.from_clause();
        let mut bound = Bound::default();
        let pattern = bound.bind(Param::Text(hint.like_pattern()));
        let limit = bound.bind(Param::Long(limit as i64));
        let like = if hint.ignore_case { "ILIKE" } else { "LIKE" };
        let sql = format!(
            "SELECT DISTINCT x.v FROM {from} CROSS JOIN LATERAL ({}) AS x(v) \
             WHERE x.v {like} {pattern} ESCAPE '\\' LIMIT {limit}",
            column.values()
        );
        let rows = self
            .rows(request.deadline, &sql, &bound, "list the values")
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| row.try_get::<_, String>(0).ok())
            .collect())
    }

    /// JLH of each found value: its share of the matching rows against its
    /// share of all rows, counted in one more statement.
    async fn jlh_weights(
        &self,
        request: &RequestContext,
        from: &str,
        values: String,
        found: &[(String, u64, Vec<u64>)],
        matching: u64,
    ) -> Result<Vec<f64>, DatasourceError> {
        let mut bound = Bound::default();
        let wanted: BTreeSet<String> = found.iter().map(|(v, _, _)| v.clone()).collect();
        let list = bound.bind(Param::TextList(wanted.into_iter().collect()));
        let sql = format!(
            "SELECT x.v, count(*), (SELECT count(*) FROM {from}) FROM {from} CROSS JOIN LATERAL ({values}) AS x(v) \
             WHERE x.v = ANY({list}) GROUP BY x.v"
        );
        let rows = self
            .rows(request.deadline, &sql, &bound, "count the background")
            .await?;
        let mut background: HashMap<String, u64> = HashMap::new();
        let mut total = 0u64;
        for row in rows {
            let value: String = row.try_get(0).unwrap_or_default();
            let n: i64 = row.try_get(1).unwrap_or(0);
            total = row.try_get::<_, i64>(2).unwrap_or(0).max(0) as u64;
            background.insert(value, n.max(0) as u64);
        }
        Ok(found
            .iter()
            .map(|(value, n, _)| {
                jlh(
                    *n,
                    matching,
                    background.get(value).copied().unwrap_or(*n),
                    total,
                )
            })
            .collect())
    }
}
