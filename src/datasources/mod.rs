//! Datasources: the adapter API (re-exported from the `tributary-datasource`
//! crate, which adapters depend on), the [`Registry`] that maps a config
//! `type` to an adapter's constructor, and one module per adapter.
//!
//! Adding an adapter is one module, one line in [`Registry::with_builtin`], and a
//! config example. `docs/plugins.md` walks through it.

pub mod remote;

pub use tributary_elasticsearch as elasticsearch;
pub use tributary_embedded as embedded;
pub use tributary_postgres as postgres;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use tributary_datasource::*;

/// Builds a datasource from its settings.
pub type Constructor =
    Box<dyn Fn(&DatasourceSettings) -> Result<Arc<dyn Datasource>, SetupError> + Send + Sync>;

/// Maps a config `type` to the constructor of its adapter.
pub struct Registry {
    constructors: BTreeMap<String, Constructor>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry {
            constructors: BTreeMap::new(),
        }
    }

    /// The adapters that ship with tributary.
    pub fn with_builtin() -> Self {
        let mut registry = Registry::new();
        registry.register("embedded", embedded::EmbeddedDatasource::from_settings);
        // The embedded engine's old name, still accepted.
        registry.register("fixtures", embedded::EmbeddedDatasource::from_settings);
        registry.register(
            "elasticsearch",
            elasticsearch::ElasticsearchDatasource::from_settings,
        );
        registry.register("postgres", postgres::PostgresDatasource::from_settings);
        registry
    }

    /// Adds (or replaces) the adapter for `kind`.
    pub fn register<F>(&mut self, kind: &str, constructor: F)
    where
        F: Fn(&DatasourceSettings) -> Result<Arc<dyn Datasource>, SetupError>
            + Send
            + Sync
            + 'static,
    {
        self.constructors
            .insert(kind.to_owned(), Box::new(constructor));
    }

    /// The known `type`s.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.constructors.keys().map(String::as_str)
    }

    /// Builds the datasource `settings` describe.
    pub fn build(&self, settings: &DatasourceSettings) -> Result<Arc<dyn Datasource>, SetupError> {
        match self.constructors.get(&settings.kind) {
            Some(constructor) => constructor(settings),
            None => Err(settings.error(format!(
                "key `type`: unknown datasource type `{}`; known types: {}",
                settings.kind,
                self.kinds().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn settings(kind: &str) -> DatasourceSettings {
        let mut options = Map::new();
        options.insert("embedded".into(), Value::from("tweets"));
        DatasourceSettings {
            id: "tweets".into(),
            name: "Tweets".into(),
            kind: kind.into(),
            timeout: None,
            options,
            data_dir: None,
        }
    }

    #[test]
    fn the_embedded_engine_answers_to_its_name_and_its_old_one() {
        let registry = Registry::with_builtin();
        for kind in ["embedded", "fixtures"] {
            let built = registry.build(&settings(kind));
            assert!(built.is_ok(), "`{kind}` builds the embedded engine");
        }
        let unknown = registry.build(&settings("fixture")).err().expect("unknown");
        assert!(
            unknown
                .to_string()
                .contains("known types: elasticsearch, embedded, fixtures, postgres"),
            "{unknown}"
        );
    }
}
