//! `/ws/services`: Damon's socket between services, spoken by a
//! `services::Peer` (no session: services send events, not requests).

use super::{Closing, Side};
use crate::disconnect::Disconnect;
use crate::services::Peer;

impl Side for Peer {
    fn text(&mut self, text: &str) -> Result<(), Closing> {
        let close = match tributary_protocol::services::decode(text) {
            Ok(message) => self.handle(message, text),
            Err(reason) => self.invalid(&reason),
        };
        match close {
            Some(close) => Err(Closing::AfterResults(Disconnect::new(
                close.code,
                close.reason,
            ))),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        self.leave();
    }
}
