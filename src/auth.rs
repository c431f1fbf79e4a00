//! Who may open a websocket: API tokens and allowed origins, checked before
//! the upgrade so a refused client never gets a connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use crate::config::AuthSettings;
use crate::datasources::Caller;

/// What an accepted upgrade may do: who the client is (its token's name,
/// for logs and datasources, never the token) and which datasources it may use.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    pub caller: Caller,
    /// May publish records (a token with `publish = true`).
    pub may_publish: bool,
}

/// Why an upgrade was refused; each maps to an HTTP status and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingToken,
    BadToken,
    /// Several tokens were presented (two `token` parameters, two
    /// `Authorization` headers, or a header and a parameter that differ).
    AmbiguousToken,
    ForbiddenOrigin,
    /// The `Origin` header is not one well-formed origin.
    BadOrigin,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MissingToken => "missing_token",
            Refusal::BadToken => "bad_token",
            Refusal::AmbiguousToken => "ambiguous_token",
            Refusal::ForbiddenOrigin => "forbidden_origin",
            Refusal::BadOrigin => "bad_origin",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::MissingToken => {
                "this server requires an API token: send `Authorization: Bearer <token>` (or the bare token) or add `?token=<token>` to the URL"
            }
            Refusal::BadToken => "the API token is not valid",
            Refusal::AmbiguousToken => {
                "more than one API token was sent: send exactly one, in `Authorization: Bearer <token>` or `?token=<token>`"
            }
            Refusal::ForbiddenOrigin => {
                "websocket connections from this origin are not allowed (see `auth.public_origins` and `auth.allowed_origins`)"
            }
            Refusal::BadOrigin => {
                "the `Origin` header must be exactly one origin such as `https://host:port`"
            }
        }
    }

    /// The HTTP status of the refusal.
    pub fn status(self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            Refusal::AmbiguousToken | Refusal::BadOrigin => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

struct Token {
    secret: Vec<u8>,
    caller: Caller,
    may_publish: bool,
}

/// A web origin: scheme, host and effective port, compared as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` strictly: `http` or `https`, no user,
    /// path, query or fragment, ASCII only. The port defaults by scheme, so
    /// `https://a.example` and `https://a.example:443` are the same origin.
    pub fn parse(text: &str) -> Option<Origin> {
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let (scheme, authority) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https") {
            return None;
        }
        // Only an authority may follow: no path (a bare trailing `/` is tolerated), query, fragment or user.
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', '\\']) {
            return None;
        }
        let url = url::Url::parse(&format!("{scheme}://{authority}")).ok()?;
        Some(Origin {
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
            scheme,
        })
    }

    /// The origin a browser shows for `scheme` and `authority` (`host[:port]`).
    fn from_parts(scheme: &str, authority: &str) -> Option<Origin> {
        Origin::parse(&format!("{scheme}://{authority}"))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The server's own origins when `auth.public_origins` is empty: `http://`
/// with the listen address, and its loopback names when it listens on
/// loopback or on every interface.
pub fn default_public_origins(listen: SocketAddr) -> Vec<Origin> {
    let port = listen.port();
    let ip = listen.ip();
    let mut origins = Vec::new();
    if !ip.is_unspecified() {
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        origins.extend(Origin::from_parts("http", &format!("{host}:{port}")));
    }
    if ip.is_loopback() || ip.is_unspecified() {
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            origins.extend(Origin::from_parts("http", &format!("{host}:{port}")));
        }
    }
    origins.dedup();
    origins
}

pub struct Auth {
    tokens: Vec<Token>,
    /// The server's own origins, from `auth.public_origins` or the listen address.
    own_origins: Vec<Origin>,
    allowed_origins: Vec<Origin>,
    any_origin: bool,
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl Auth {
    /// Reads the auth settings; `listen` is the address the server is bound to.
    pub fn new(settings: &AuthSettings, listen: SocketAddr) -> Result<Auth, String> {
        let tokens = settings
            .tokens
            .iter()
            .map(|(name, token)| Token {
                secret: token.token.as_bytes().to_vec(),
                caller: Caller {
                    token_name: Some(Arc::from(name.as_str())),
                    datasources: token.datasources.as_deref().map(Arc::from),
                },
                may_publish: token.publish,
            })
            .collect();
        let origins = |key: &str, list: &[String]| {
            list.iter()
                .filter(|o| o.as_str() != "*")
                .map(|o| {
                    Origin::parse(o).ok_or_else(|| {
                        format!("invalid configuration: `auth.{key}`: `{o}` is not an origin such as `https://host:port`")
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut own_origins = origins("public_origins", &settings.public_origins)?;
        if own_origins.is_empty() {
            own_origins = default_public_origins(listen);
        }
        let trusted_proxies = settings
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("invalid configuration: `auth.trusted_proxies`: `{p}` is not an IP address or network"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Auth {
            tokens,
            own_origins,
            allowed_origins: origins("allowed_origins", &settings.allowed_origins)?,
            any_origin: settings.allowed_origins.iter().any(|o| o == "*"),
            trusted_proxies,
        })
    }

    /// True when API tokens are required.
    pub fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Decides whether this upgrade request may open a websocket.
    pub fn check(&self, req: &HttpRequest) -> Result<Grant, Refusal> {
        self.check_origin(req)?;
        self.check_token(req)
    }

    /// The grant of the token the request carries (everything when no tokens are configured).
    pub fn check_token(&self, req: &HttpRequest) -> Result<Grant, Refusal> {
        if self.tokens.is_empty() {
            return Ok(Grant::default());
        }
        let presented = presented_token(req)?.ok_or(Refusal::MissingToken)?;
        // Compare against every token in constant time so timing reveals nothing.
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.secret.as_slice().ct_eq(presented.as_bytes())) {
                found = Some(token);
            }
        }
        let token = found.ok_or(Refusal::BadToken)?;
        Ok(Grant {
            caller: token.caller.clone(),
            may_publish: token.may_publish,
        })
    }

    /// Browsers always send `Origin` on websocket upgrades; other clients
    /// usually do not, and cannot be hijacked through a page, so they pass.
    /// `Host` says nothing about who is asking (DNS rebinding sets it at
    /// will), so the server's own origins come from configuration, never
    /// from the request — except from a trusted proxy's forwarding headers.
    pub fn check_origin(&self, req: &HttpRequest) -> Result<(), Refusal> {
        let mut headers = req.headers().get_all(actix_web::http::header::ORIGIN);
        let Some(value) = headers.next() else {
            return Ok(());
        };
        if headers.next().is_some() {
            return Err(Refusal::BadOrigin);
        }
        let origin = value
            .to_str()
            .ok()
            .and_then(Origin::parse)
            .ok_or(Refusal::BadOrigin)?;
        if self.any_origin
            || self.own_origins.contains(&origin)
            || self.allowed_origins.contains(&origin)
            || self.forwarded_origin(req).as_ref() == Some(&origin)
        {
            Ok(())
        } else {
            Err(Refusal::ForbiddenOrigin)
        }
    }

    /// The origin a trusted reverse proxy says the client reached.
    fn forwarded_origin(&self, req: &HttpRequest) -> Option<Origin> {
        let peer = req.peer_addr()?.ip();
        if !self.trusted_proxies.iter().any(|net| net.contains(&peer)) {
            return None;
        }
        let info = req.connection_info();
        Origin::from_parts(info.scheme(), info.host())
    }
}

/// The one token the request presents, if any. Two different ones are refused.
fn presented_token(req: &HttpRequest) -> Result<Option<String>, Refusal> {
    let mut headers = req
        .headers()
        .get_all(actix_web::http::header::AUTHORIZATION);
    let header = match (headers.next(), headers.next()) {
        (None, _) => None,
        (Some(value), None) => bearer_token(value),
        (Some(_), Some(_)) => return Err(Refusal::AmbiguousToken),
    };
    let mut params = url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned());
    let param = match (params.next(), params.next()) {
        (param, None) => param,
        (_, Some(_)) => return Err(Refusal::AmbiguousToken),
    };
    match (header, param) {
        (Some(header), Some(param)) if header != param => Err(Refusal::AmbiguousToken),
        (header, param) => Ok(header.or(param)),
    }
}

/// `Authorization: Bearer <token>`, or the bare token as the whole value
/// (Felix's clients send it as-is). Any other scheme (`Basic …`) is no token.
fn bearer_token(value: &actix_web::http::header::HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?.trim();
    match value.split_once(' ') {
        Some((scheme, token)) => scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned()),
        None => (!value.is_empty()).then(|| value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Option<Origin> {
        Origin::parse(text)
    }

    #[test]
    fn a_token_comes_as_bearer_or_bare() {
        let header = |text: &'static str| actix_web::http::header::HeaderValue::from_static(text);
        assert_eq!(bearer_token(&header("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(
            bearer_token(&header("bearer  abc ")).as_deref(),
            Some("abc")
        );
        assert_eq!(bearer_token(&header("abc")).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&header("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer_token(&header("")), None);
    }

    #[test]
    fn origins_parse_strictly() {
        assert_eq!(
            origin("https://a.example:443"),
            origin("https://A.example"),
            "explicit default port"
        );
        assert_eq!(origin("http://a.example:80"), origin("http://a.example"));
        assert_ne!(
            origin("https://127.0.0.1:8080"),
            origin("http://127.0.0.1:8080")
        );
        for bad in [
            "null",
            "http://127.0.0.1:8080:80",
            "http://evil.example\u{ff}",
            "http://\u{e9}vil.example",
            "ftp://a.example",
            "http://user@a.example",
            "http://a.example/path",
            "http://a.example?x",
            "http://",
            "a.example",
            "http://a.example:99999",
        ] {
            assert_eq!(origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn own_origins_come_from_the_listen_address() {
        let loopback = default_public_origins("127.0.0.1:8080".parse().unwrap());
        assert!(loopback.contains(&origin("http://localhost:8080").unwrap()));
        assert!(loopback.contains(&origin("http://127.0.0.1:8080").unwrap()));
        assert!(!loopback.contains(&origin("http://127.0.0.1:9090").unwrap()));
        let public = default_public_origins("10.1.2.3:8080".parse().unwrap());
        assert_eq!(public, vec![origin("http://10.1.2.3:8080").unwrap()]);
    }
}
