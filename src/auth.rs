//! Who may open a websocket: API tokens and allowed origins, checked before
//! the upgrade so a refused client never gets a connection.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpRequest};
use subtle::ConstantTimeEq;

use crate::config::AuthSettings;
use crate::federation::Access;

/// What an accepted upgrade may do.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The token's name (for logs), when tokens are in use.
    pub token_name: Option<String>,
    pub access: Access,
}

/// Why an upgrade was refused; each maps to an HTTP status and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingToken,
    BadToken,
    ForbiddenOrigin,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MissingToken => "missing_token",
            Refusal::BadToken => "bad_token",
            Refusal::ForbiddenOrigin => "forbidden_origin",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::MissingToken => {
                "this server requires an API token: send `Authorization: Bearer <token>` or add `?token=<token>` to the URL"
            }
            Refusal::BadToken => "the API token is not valid",
            Refusal::ForbiddenOrigin => {
                "websocket connections from this origin are not allowed (see `auth.allowed_origins`)"
            }
        }
    }
}

struct Token {
    name: String,
    secret: Vec<u8>,
    access: Access,
}

pub struct Auth {
    tokens: Vec<Token>,
    allowed_origins: Vec<String>,
    any_origin: bool,
}

impl Auth {
    pub fn new(settings: &AuthSettings) -> Auth {
        let tokens = settings
            .tokens
            .iter()
            .map(|(name, token)| Token {
                name: name.clone(),
                secret: token.token.as_bytes().to_vec(),
                access: match &token.datasources {
                    Some(ids) => Access::Only(Arc::from(ids.as_slice())),
                    None => Access::All,
                },
            })
            .collect();
        Auth {
            tokens,
            allowed_origins: settings
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any_origin: settings.allowed_origins.iter().any(|o| o == "*"),
        }
    }

    /// Decides whether this upgrade request may open a websocket.
    pub fn check(&self, req: &HttpRequest) -> Result<Grant, Refusal> {
        self.check_origin(req)?;
        if self.tokens.is_empty() {
            return Ok(Grant {
                token_name: None,
                access: Access::All,
            });
        }
        let presented = bearer_token(req)
            .or_else(|| query_token(req))
            .ok_or(Refusal::MissingToken)?;
        // Compare against every token in constant time so timing reveals nothing.
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.secret.as_slice().ct_eq(presented.as_bytes())) {
                found = Some(token);
            }
        }
        let token = found.ok_or(Refusal::BadToken)?;
        Ok(Grant {
            token_name: Some(token.name.clone()),
            access: token.access.clone(),
        })
    }

    /// Browsers always send `Origin` on websocket upgrades; other clients
    /// usually do not, and cannot be hijacked through a page, so they pass.
    fn check_origin(&self, req: &HttpRequest) -> Result<(), Refusal> {
        if self.any_origin {
            return Ok(());
        }
        let Some(origin) = req
            .headers()
            .get(actix_web::http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
        else {
            return Ok(());
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.allowed_origins.contains(&origin) {
            return Ok(());
        }
        let host = req.connection_info().host().to_ascii_lowercase();
        if same_authority(&origin, &host) {
            Ok(())
        } else {
            Err(Refusal::ForbiddenOrigin)
        }
    }
}

/// True when `origin` (`scheme://host[:port]`) names the server reached at `host` (`host[:port]`).
fn same_authority(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    authority.trim_end_matches(default_port) == host.trim_end_matches(default_port)
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .ok()?
        .0
        .remove("token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_their_own_host() {
        assert!(same_authority("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_authority(
            "https://tributary.example",
            "tributary.example"
        ));
        assert!(same_authority(
            "https://tributary.example:443",
            "tributary.example"
        ));
        assert!(!same_authority("http://evil.example", "tributary.example"));
        assert!(!same_authority("http://127.0.0.1:9090", "127.0.0.1:8080"));
        assert!(!same_authority("null", "127.0.0.1:8080"));
    }
}
