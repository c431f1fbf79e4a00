//! What one search may spend, and why it stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tributary_datasource::DatasourceError;

/// What one search may spend: it stops when canceled (its request was
/// canceled or timed out, or the client left), at its deadline, or when its
/// patterns match more than `max_terms` distinct terms.
#[derive(Clone)]
pub struct Budget {
    pub canceled: Arc<AtomicBool>,
    pub deadline: Instant,
    pub max_terms: usize,
}

/// Why a search stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    Canceled,
    Deadline,
    Terms,
}

impl Budget {
    /// Is there anything left? Checked between units of work.
    pub fn check(&self) -> Result<(), Exhausted> {
        if self.canceled.load(Ordering::Relaxed) {
            Err(Exhausted::Canceled)
        } else if Instant::now() >= self.deadline {
            Err(Exhausted::Deadline)
        } else {
            Ok(())
        }
    }
}

impl From<Exhausted> for DatasourceError {
    fn from(why: Exhausted) -> Self {
        match why {
            Exhausted::Canceled => DatasourceError::timeout("the search was canceled"),
            Exhausted::Deadline => DatasourceError::timeout(
                "the search was stopped: it ran past its time budget (option `search_budget`); make wildcards and patterns more specific",
            ),
            Exhausted::Terms => DatasourceError::bad_query(
                "a wildcard or pattern matches too many distinct terms (option `max_expanded_terms`); make it more specific",
            ),
        }
    }
}
