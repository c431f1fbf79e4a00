//! The publication log of the index: which rows each recent publication
//! ends at, so a live cursor (a row count) and a publication's position map
//! to each other.

use super::*;

/// The rows of the latest publications (of one epoch): a live cursor is a
/// row count, and a publication's position maps to the rows after it.
#[derive(Default)]
pub(super) struct Ledger {
    epoch: Option<String>,
    /// (offset, first row, end row), oldest first, at most [`LEDGER_ENTRIES`].
    entries: std::collections::VecDeque<(u64, usize, usize)>,
    /// The last offset held of every epoch seen, this one included.
    reached: HashMap<String, u64>,
}

/// Publications a fixtures index remembers the rows of (a resume from
/// further back is told it was not recovered).
const LEDGER_ENTRIES: usize = 100_000;

impl Ledger {
    /// Notes where `batches` (in the order their rows were added from
    /// `first_row`) end; a batch that is no publication only takes rows.
    pub(super) fn record(&mut self, first_row: usize, batches: &[(Option<Position>, usize)]) {
        let mut row = first_row;
        for (position, records) in batches {
            let Some(Position { offset, epoch }) = position else {
                row += records;
                continue;
            };
            if self.epoch.as_deref() != Some(epoch.as_str()) {
                // History was lost: old offsets mean nothing any more.
                self.epoch = Some(epoch.clone());
                self.entries.clear();
            }
            let end = row + records;
            let reached = self.reached.entry(epoch.clone()).or_default();
            *reached = (*reached).max(*offset);
            // Offsets only grow within an epoch; a repeated one is ignored.
            if self
                .entries
                .back()
                .is_none_or(|&(last, _, _)| *offset > last)
            {
                self.entries.push_back((*offset, row, end));
                if self.entries.len() > LEDGER_ENTRIES {
                    self.entries.pop_front();
                }
            }
            row = end;
        }
    }

    /// The last publication held in the first `rows` rows.
    pub(super) fn position_of(&self, rows: usize) -> Option<Position> {
        let epoch = self.epoch.clone()?;
        let after = self.entries.partition_point(|&(_, _, end)| end <= rows);
        let offset = match after {
            0 => {
                // Before every publication remembered: right before the first?
                let &(first, start, _) = self.entries.front()?;
                (start == rows).then(|| first - 1)?
            }
            n => self.entries[n - 1].0,
        };
        Some(Position { offset, epoch })
    }

    /// The row count right after publication `position`.
    /// Whether the index holds publication `position` (of any epoch seen).
    pub(super) fn holds(&self, position: &Position) -> bool {
        self.reached
            .get(&position.epoch)
            .is_some_and(|&last| last >= position.offset)
    }

    pub(super) fn rows_after(&self, position: &Position) -> Option<usize> {
        if self.epoch.as_deref() != Some(position.epoch.as_str()) {
            return None;
        }
        let (first, start, _) = *self.entries.front()?;
        if position.offset + 1 == first {
            return Some(start);
        }
        let at = self
            .entries
            .binary_search_by_key(&position.offset, |&(offset, _, _)| offset)
            .ok()?;
        Some(self.entries[at].2)
    }
}
