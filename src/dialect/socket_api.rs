//! `/ws`: Marija's Socket API and its extensions, spoken by a `Session`.

use std::time::Duration;

use super::{Closing, Side};
use crate::disconnect::Disconnect;
use tokio::sync::watch;

use crate::protocol::{self, DecodeError};
use crate::session::{Command, Session};

pub struct SocketApi(pub Session);

impl Side for SocketApi {
    fn greet(&mut self) {
        self.0.greet();
    }

    fn text(&mut self, text: &str) -> Result<(), Closing> {
        match protocol::decode(text) {
            Ok(message) => self.0.handle(Command::Received(message)),
            Err(DecodeError::NotAnObject) => return Err(Closing::Now(Disconnect::not_an_object())),
            Err(DecodeError::Invalid(report)) => self.0.handle(Command::Invalid(report)),
        }
        Ok(())
    }

    fn running(&self) -> watch::Receiver<usize> {
        self.0.running()
    }

    fn shutdown(&mut self, drain: Duration) {
        self.0.handle(Command::Shutdown(drain));
    }

    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }

    fn datasources_changed(&mut self) {
        self.0.datasources_changed();
    }

    fn stop(&mut self) {
        self.0.handle(Command::Stop);
    }
}
