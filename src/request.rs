//! Requests as the federation receives them: validated once, right after
//! decoding, with their datasources de-duplicated.

use std::collections::BTreeMap;

use crate::config::Settings;
use crate::datasources::QueryLimits;
use crate::datasources::{Position, SearchQuery};
use crate::expand::{ExpandPlan, Normalizer};
use crate::protocol::{Echo, ErrorCode, ErrorReport, ExpandRequest, FieldsRequest, ItemsRequest};

/// What a request must satisfy before any datasource sees it.
#[derive(Debug, Clone)]
pub struct RequestRules {
    /// The largest `size` an `ITEMS_REQUEST` may ask for.
    pub max_page_size: u64,
    /// The shape a query may have.
    pub query_limits: QueryLimits,
}

/// A valid `FIELDS_REQUEST`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldsQuery {
    pub echo: Echo,
    /// At least one, each once.
    pub datasources: Vec<String>,
}

/// A valid `ITEMS_REQUEST`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemsQuery {
    pub echo: Echo,
    /// At least one, each once.
    pub datasources: Vec<String>,
    pub search: SearchQuery,
    /// Keep following the query once its page is sent.
    pub live: bool,
    /// Datasources of a live request taken up again, and the position each
    /// was last received at.
    pub resume: BTreeMap<String, Position>,
}

impl RequestRules {
    /// What every request must satisfy; query limits capped at what every parser handles safely.
    pub fn from_settings(settings: &Settings) -> RequestRules {
        RequestRules {
            max_page_size: settings.results.max_page_size,
            query_limits: QueryLimits {
                max_bytes: settings.limits.max_query_bytes,
                max_depth: settings.limits.max_query_depth,
                max_clauses: settings.limits.max_query_clauses,
            }
            .capped(),
        }
    }
}

/// Most selected values one `EXPAND_REQUEST` may start from.
pub const MAX_EXPAND_VALUES: usize = 1_000;
/// Most links of its own one `EXPAND_REQUEST` may bring.
pub const MAX_REQUEST_LINKS: usize = 20;
/// Most fields one of those links may join.
pub const MAX_LINK_FIELDS: usize = 50;
/// Most new vertices per field one `EXPAND_REQUEST` may ask for.
pub const MAX_EXPAND_SIZE: u64 = 1_000;

/// Why a request was refused, with its echo for the `ERROR`.
pub type Refusal = Box<ErrorReport>;

impl RequestRules {
    pub fn fields(&self, request: FieldsRequest) -> Result<FieldsQuery, Refusal> {
        let echo = Echo {
            query: None,
            color: None,
            request_id: request.request_id,
        };
        let datasources = unique_datasources(request.datasources, &echo)?;
        Ok(FieldsQuery { echo, datasources })
    }

    pub fn items(&self, request: ItemsRequest) -> Result<ItemsQuery, Refusal> {
        let echo = Echo {
            query: Some(request.query.clone()),
            color: request.color,
            request_id: request.request_id,
        };
        let refuse = |code, message: String| {
            Err(Box::new(
                ErrorReport::new(code, message).echoing(echo.clone()),
            ))
        };
        if request.size > self.max_page_size {
            return refuse(
                ErrorCode::InvalidRequest,
                format!("`size` may be at most {}", self.max_page_size),
            );
        }
        if let Err(limit) = self.query_limits.check(&request.query) {
            return refuse(ErrorCode::BadQuery, limit.to_string());
        }
        if request.live && echo.request_id.is_none() {
            return refuse(
                ErrorCode::InvalidRequest,
                "a live request needs a `request-id` (it is how its appends, `UPDATE_REQUEST` and `CANCEL_REQUEST` name it)".into(),
            );
        }
        let resume = request.resume.unwrap_or_default();
        if !resume.is_empty() && !request.live {
            return refuse(
                ErrorCode::InvalidRequest,
                "`resume` takes up a live request again: it needs `\"live\": true`".into(),
            );
        }
        if let Some(other) = resume.keys().find(|id| !request.datasources.contains(id)) {
            return refuse(
                ErrorCode::InvalidRequest,
                format!("`resume` names datasource `{other}`, which `datasources` does not"),
            );
        }
        let datasources = unique_datasources(request.datasources, &echo)?;
        Ok(ItemsQuery {
            echo,
            datasources,
            live: request.live,
            resume,
            search: SearchQuery {
                query: request.query,
                from: request.from,
                size: request.size,
            },
        })
    }
}

impl RequestRules {
    pub fn expand(&self, request: ExpandRequest) -> Result<ExpandPlan, Refusal> {
        let echo = Echo {
            query: None,
            color: request.color,
            request_id: request.request_id,
        };
        let refuse = |message: String| {
            Err(Box::new(
                ErrorReport::new(ErrorCode::InvalidRequest, message).echoing(echo.clone()),
            ))
        };
        if request.values.is_empty() {
            return refuse("`values` is empty: select at least one value to expand from".into());
        }
        if request.values.len() > MAX_EXPAND_VALUES {
            return refuse(format!(
                "`values` has {} values; at most {MAX_EXPAND_VALUES} may be expanded at once",
                request.values.len()
            ));
        }
        if let Some(empty) = request
            .values
            .iter()
            .find(|v| v.field.trim().is_empty() || v.value.is_empty())
        {
            return refuse(format!(
                "`values` has an empty field or value ({{\"field\": {:?}, \"value\": {:?}}})",
                empty.field, empty.value
            ));
        }
        if request.size == 0 || request.size > MAX_EXPAND_SIZE {
            return refuse(format!(
                "`size` (new values per field) must be between 1 and {MAX_EXPAND_SIZE}"
            ));
        }
        if request.fields.iter().any(|f| f.trim().is_empty()) {
            return refuse("`fields` has an empty field path".into());
        }
        if request.links.len() > MAX_REQUEST_LINKS {
            return refuse(format!(
                "`links` has {} links; at most {MAX_REQUEST_LINKS}",
                request.links.len()
            ));
        }
        for link in &request.links {
            let empty = link.name.trim().is_empty()
                || link
                    .fields
                    .iter()
                    .any(|f| f.datasource.is_empty() || f.field.trim().is_empty());
            if empty || !(2..=MAX_LINK_FIELDS).contains(&link.fields.len()) {
                return refuse(format!(
                    "`links`: link {:?} needs a name and 2 to {MAX_LINK_FIELDS} fields, each with a datasource and a field",
                    link.name
                ));
            }
            if let Err(error) = Normalizer::new(link.lowercase, &link.replace) {
                return refuse(format!("`links`: link {:?} `replace`: {error}", link.name));
            }
        }
        let datasources = unique_datasources(request.datasources, &echo)?;
        let mut values = Vec::with_capacity(request.values.len());
        for value in request.values {
            if !values.contains(&value) {
                values.push(value);
            }
        }
        Ok(ExpandPlan {
            echo,
            datasources,
            values,
            fields: request.fields,
            size: request.size as usize,
            exclude: request.exclude.into_iter().collect(),
            mode: request.mode,
            between: request.between,
            links: request.links,
        })
    }
}

fn unique_datasources(ids: Vec<String>, echo: &Echo) -> Result<Vec<String>, Refusal> {
    if ids.is_empty() {
        return Err(Box::new(
            ErrorReport::new(
                ErrorCode::InvalidRequest,
                "`datasources` is empty: name at least one",
            )
            .echoing(echo.clone()),
        ));
    }
    let mut unique: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(&id) {
            unique.push(id);
        }
    }
    Ok(unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(datasources: &[&str], query: &str, size: u64) -> ItemsRequest {
        ItemsRequest {
            datasources: datasources.iter().map(|s| s.to_string()).collect(),
            query: query.into(),
            from: 0,
            size,
            color: Some("#fff".into()),
            request_id: None,
            live: false,
            resume: None,
        }
    }

    #[test]
    fn datasources_are_deduplicated_and_never_empty() {
        let rules = RequestRules::from_settings(&Settings::default());
        let valid = rules.items(items(&["a", "b", "a"], "x", 5)).unwrap();
        assert_eq!(valid.datasources, ["a", "b"]);
        assert_eq!(valid.echo.color.as_deref(), Some("#fff"));
        let refused = rules.items(items(&[], "x", 5)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidRequest);
        assert_eq!(refused.echo.query.as_deref(), Some("x"));
    }

    #[test]
    fn pages_and_queries_over_the_limits_are_refused() {
        let rules = RequestRules::from_settings(&Settings::default());
        let refused = rules.items(items(&["a"], "x", 100_001)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidRequest);
        let deep = format!("{}a{}", "(".repeat(500), ")".repeat(500));
        let refused = rules.items(items(&["a"], &deep, 5)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadQuery);
    }
}
