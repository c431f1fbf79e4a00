//! Why a datasource could not answer.

use std::fmt;

/// Why a datasource could not answer. The message reaches the user, so it
/// should say what went wrong in their terms.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasourceError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query could not be parsed or refers to something that does not exist.
    BadQuery,
    /// The backend is unreachable or failed.
    Unavailable,
    /// The backend refused our credentials.
    Unauthorized,
    /// The backend did not answer in time.
    Timeout,
    /// Nobody wants the results any more (the request was canceled or the
    /// client left): not a failure, and never reported to a client.
    Canceled,
}

impl DatasourceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DatasourceError {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_query(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadQuery, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    pub fn canceled() -> Self {
        Self::new(ErrorKind::Canceled, "the request was canceled")
    }
}

impl fmt::Display for DatasourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DatasourceError {}

/// `text` with the user and password of every URL in it hidden:
/// `http://user:secret@host` becomes `http://***@host`. The server applies
/// it to every datasource error before it reaches a client or a log.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#`, quote, bracket or whitespace.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | ')' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                rest = &tail[user_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_userinfo;

    #[test]
    fn userinfo_is_hidden_wherever_a_url_appears() {
        assert_eq!(
            redact_userinfo(
                "error sending request for url (http://elastic:s3cret@es:9200/_search)"
            ),
            "error sending request for url (http://***@es:9200/_search)"
        );
        assert_eq!(
            redact_userinfo("a https://u:p@a.example, b http://b.example/x@y"),
            "a https://***@a.example, b http://b.example/x@y"
        );
        assert_eq!(redact_userinfo("no url here"), "no url here");
    }
}
