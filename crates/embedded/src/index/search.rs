//! Searching the index: a page of a query, and the rows a live query has
//! not seen yet.

use super::*;

impl EmbeddedIndex {
    /// Rows searches see now: a live cursor taken here reports every row after.
    pub(crate) fn visible_rows(&self) -> usize {
        self.snapshot().rows
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs one query: the total number of matches and the rows (indexes into
    /// `records`) of the page `from..from+size`, best first. Records in the
    /// tail (published, not yet folded into the index) match as they will
    /// once indexed, and rank after the indexed ones until then.
    pub(crate) fn search_rows(
        &self,
        query: &SearchQuery,
        budget: &Budget,
    ) -> Result<Page, DatasourceError> {
        // Parsers recurse on nesting: refuse what could exhaust the stack first.
        QueryLimits::CEILING
            .check(&query.query)
            .map_err(|limit| DatasourceError::bad_query(limit.to_string()))?;
        let snapshot = self.snapshot();
        let Snapshot {
            searcher,
            rows: seen,
            replaced,
            ..
        } = &snapshot;
        let seen = *seen;
        let settled = snapshot.tail.len() == 0;
        let page = |total: u64, rows: Vec<u32>| Page {
            total,
            rows,
            seen,
            settled,
        };
        let text = query.query.trim();
        let from = usize::try_from(query.from).unwrap_or(usize::MAX);
        let size = usize::try_from(query.size).unwrap_or(usize::MAX).min(seen);
        let end = from.saturating_add(size).min(seen);
        if tributary_query::matches_all(text) {
            // Everything matches with the same score, so the page is simply
            // the records in order: no index walk, no ranking.
            if replaced.len() == 0 {
                let rows = (from.min(end)..end).map(|row| row as u32).collect();
                return Ok(page(seen as u64, rows));
            }
            let rows = (0..seen)
                .filter(|&row| !replaced.contains(row))
                .skip(from)
                .take(size)
                .map(|row| row as u32)
                .collect();
            return Ok(page((seen - replaced.len().min(seen)) as u64, rows));
        }
        let parsed =
            tributary_query::parse(text).map_err(|e| DatasourceError::bad_query(e.to_string()))?;
        let Some(plan) = Planner::new(&self.mapping, &self.index_fields).plan(&parsed) else {
            // Nothing left to search for (every term analysed to nothing).
            return Ok(page(0, Vec::new()));
        };
        let mut compiler = Compiler::new(&self.mapping, &self.index_fields, searcher, budget);
        let compiled = compiler.compile_plan(&plan)?;
        let tail = self.tail_matches(&snapshot, &plan, 0, budget, budget)?;

        let internal = |e: tantivy::TantivyError| self.internal(e);
        // Rows of the index a tail record replaced still match there until
        // the tail is folded: they are left out by their row.
        let alive = {
            let replaced = Arc::clone(replaced);
            move |row: u64| !replaced.contains(row as usize)
        };
        if size == 0 || from >= seen {
            let indexed = if snapshot.stale {
                let count = FilterCollector::new(ROW_FIELD.to_owned(), alive, Count);
                searcher.search(&compiled, &count)
            } else {
                searcher.search(&compiled, &Count)
            }
            .map_err(internal)?;
            return Ok(page((indexed + tail.len()) as u64, Vec::new()));
        }
        let top = TopDocs::with_limit(size).and_offset(from).order_by_score();
        let (indexed, hits) = if snapshot.stale {
            let both = FilterCollector::new(ROW_FIELD.to_owned(), alive, (Count, top));
            searcher.search(&compiled, &both)
        } else {
            searcher.search(&compiled, &(Count, top))
        }
        .map_err(internal)?;
        budget.check()?;
        // One row column per segment, opened once for all hits.
        let columns = searcher
            .segment_readers()
            .iter()
            .map(|segment| segment.fast_fields().u64(ROW_FIELD))
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        let mut rows: Vec<u32> = hits
            .into_iter()
            .filter_map(|(_, address)| {
                let row = columns
                    .get(address.segment_ord as usize)?
                    .first(address.doc_id)?;
                u32::try_from(row).ok()
            })
            .collect();
        // The tail's matches follow the index's, in the order they came.
        let skip = from.saturating_sub(indexed);
        let room = size.saturating_sub(rows.len());
        rows.extend(tail.iter().skip(skip).take(room));
        Ok(page((indexed + tail.len()) as u64, rows))
    }

    /// The tail's records from row `after` on that match `plan` (and were
    /// not replaced), in row order. Building the plan's automata counts
    /// against `expansion`, matching against `reading`.
    fn tail_matches(
        &self,
        snapshot: &Snapshot,
        plan: &Plan,
        after: usize,
        expansion: &Budget,
        reading: &Budget,
    ) -> Result<Vec<u32>, DatasourceError> {
        let mut percolator = Percolator::new(plan, expansion);
        let mut rows = Vec::new();
        for (n, doc) in snapshot.tail.docs().enumerate() {
            if n % 256 == 255 {
                reading.check()?;
            }
            if doc.row < after || snapshot.replaced.contains(doc.row) {
                continue;
            }
            if percolator.matches(doc)? {
                if let Ok(row) = u32::try_from(doc.row) {
                    rows.push(row);
                }
            }
        }
        Ok(rows)
    }

    /// The index as live queries are matched against it: one snapshot, and
    /// each segment's row column opened once for all of them.
    pub(crate) fn live_view(&self) -> Result<LiveView, DatasourceError> {
        let snapshot = self.snapshot();
        let columns = snapshot
            .searcher
            .segment_readers()
            .iter()
            .map(|segment| segment.fast_fields().u64(ROW_FIELD))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.internal(e))?;
        Ok(LiveView { snapshot, columns })
    }

    /// The rows from `after` on that match `query`, in the order they were
    /// added, and the number of rows searched (the next cursor). Only the
    /// segments holding such rows are searched; new records are usually
    /// all in the tail, matched in memory without the index.
    pub(crate) fn rows_since(
        &self,
        view: &LiveView,
        query: &str,
        after: usize,
        expansion: &Budget,
        budget: &Budget,
    ) -> Result<(Vec<u32>, usize), DatasourceError> {
        let LiveView { snapshot, columns } = view;
        let Snapshot {
            searcher,
            indexed,
            rows: seen,
            replaced,
            ..
        } = snapshot;
        let (indexed, seen) = (*indexed, *seen);
        if after >= seen {
            return Ok((Vec::new(), seen.max(after)));
        }
        let text = query.trim();
        if tributary_query::matches_all(text) {
            let rows = (after..seen)
                .filter(|&row| !replaced.contains(row))
                .map(|row| row as u32)
                .collect();
            return Ok((rows, seen));
        }
        QueryLimits::CEILING
            .check(text)
            .map_err(|limit| DatasourceError::bad_query(limit.to_string()))?;
        let parsed =
            tributary_query::parse(text).map_err(|e| DatasourceError::bad_query(e.to_string()))?;
        let Some(plan) = Planner::new(&self.mapping, &self.index_fields).plan(&parsed) else {
            return Ok((Vec::new(), seen));
        };
        let mut rows = Vec::new();
        if after < indexed {
            // Expanding patterns against the dictionary is the costly part, and
            // the same however few records are new: it has a budget of its own.
            let mut compiler =
                Compiler::new(&self.mapping, &self.index_fields, searcher, expansion);
            let compiled = compiler.compile_plan(&plan)?;
            let internal = |e: tantivy::TantivyError| self.internal(e);
            let weight = compiled
                .weight(EnableScoring::disabled_from_searcher(searcher))
                .map_err(internal)?;
            for (segment, column) in searcher.segment_readers().iter().zip(columns) {
                if column.max_value() < after as u64 {
                    continue;
                }
                weight
                    .for_each_no_score(segment, &mut |docs| {
                        rows.extend(
                            docs.iter()
                                .filter_map(|&doc| column.first(doc))
                                .filter(|&row| row >= after as u64 && row < indexed as u64)
                                // Deleted documents still match until merged away.
                                .filter(|&row| !replaced.contains(row as usize))
                                .filter_map(|row| u32::try_from(row).ok()),
                        );
                    })
                    .map_err(internal)?;
                budget.check()?;
            }
            rows.sort_unstable();
        }
        rows.extend(self.tail_matches(snapshot, &plan, after, expansion, budget)?);
        Ok((rows, seen))
    }

    pub(super) fn internal(&self, e: tantivy::TantivyError) -> DatasourceError {
        // The index's own words stay in the log.
        tracing::warn!(source = %self.source, error = %e, "embedded search failed");
        DatasourceError::unavailable("the search failed inside the datasource")
    }

    pub(crate) fn items(&self, rows: &[u32]) -> Vec<Item> {
        let records = self.read_records();
        rows.iter()
            .filter_map(|&row| records.get(row as usize))
            .map(|record| Item {
                id: record.id.clone(),
                fields: Arc::clone(&record.fields),
                highlight: None,
            })
            .collect()
    }

    /// Runs one query and returns the total and the requested page.
    #[cfg(test)]
    pub(crate) fn search(
        &self,
        query: &SearchQuery,
        budget: &Budget,
    ) -> Result<(u64, Vec<Item>), DatasourceError> {
        let page = self.search_rows(query, budget)?;
        Ok((page.total, self.items(&page.rows)))
    }
}
