//! `/api/streaming`: Elstat's streaming API (channels only, `op` codes),
//! spoken by a `Session` that answers in Elstat's framing.

use super::{Closing, Side};
use crate::disconnect::Disconnect;
use crate::protocol::elstat::{self, Refused};
use crate::session::{Command, Session};

pub struct Elstat(pub Session);

impl Side for Elstat {
    fn text(&mut self, text: &str) -> Result<(), Closing> {
        match elstat::decode(text) {
            Ok(message) => {
                self.0.handle(Command::Received(message));
                Ok(())
            }
            Err(Refused::TooMuch) => Err(Closing::Now(Disconnect::elstat_too_much())),
            Err(Refused::InvalidPayload) => Err(Closing::Now(Disconnect::elstat_invalid_payload())),
        }
    }

    fn stop(&mut self) {
        self.0.handle(Command::Stop);
    }
}
