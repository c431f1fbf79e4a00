//! Who asks, and by when the answer is due.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The client a request comes from, as its credentials describe it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    /// The name of the API token the client presented (never the token); `None` on a server without tokens.
    pub token_name: Option<Arc<str>>,
    /// The datasources the token may use; `None`: all of them.
    pub datasources: Option<Arc<[String]>>,
}

impl Caller {
    /// May this caller use the datasource `id`?
    pub fn may_use(&self, id: &str) -> bool {
        match &self.datasources {
            None => true,
            Some(ids) => ids.iter().any(|allowed| allowed == id),
        }
    }
}

/// What every call of a datasource is told about its request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub caller: Caller,
    /// When the datasource's time for this call runs out. Time the server
    /// spends waiting for a slow client is added to it, so it measures the
    /// datasource alone; an adapter may pass what is left of it to its backend.
    pub deadline: Instant,
}

impl RequestContext {
    /// An anonymous caller with a minute to spare, for tests.
    pub fn for_test() -> RequestContext {
        RequestContext {
            caller: Caller::default(),
            deadline: Instant::now() + Duration::from_secs(60),
        }
    }

    /// How long until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}
