//! The sink kinds compiled into this build, and how a `[[sinks]]` entry
//! becomes an [`EventSink`].

use std::sync::Arc;

use aurora_core::sink::{ConfigurableSink, EventSink, SinkEnv};

use crate::config::{Config, ConfigError, SinkEntry};

/// The sink kinds of this build, each behind its cargo feature. To add a
/// kind: its crate as an optional dependency, a `sink-<kind>` feature
/// enabling it, and one line here.
const KINDS: &[SinkKind] = &[
    #[cfg(feature = "sink-jsonl")]
    SinkKind::of::<aurora_sink_jsonl::JsonlSink>(),
    #[cfg(feature = "sink-webhook")]
    SinkKind::of::<aurora_sink_webhook::WebhookSink>(),
    #[cfg(feature = "sink-kafka")]
    SinkKind::of::<aurora_sink_kafka::KafkaSink>(),
    #[cfg(feature = "sink-nats")]
    SinkKind::of::<aurora_sink_nats::NatsSink>(),
];

/// Every sink kind shipped with Aurora Locus and the feature of this crate
/// that compiles it in, so that a build without it can say what is missing.
const SHIPPED: &[(&str, &str)] = &[
    ("jsonl", "sink-jsonl"),
    ("webhook", "sink-webhook"),
    ("kafka", "sink-kafka"),
    ("nats", "sink-nats"),
];

/// Builds an [`EventSink`] from its kind's settings.
type Constructor = fn(&SinkEntry, &SinkEnv) -> Result<Arc<dyn EventSink>, String>;

/// A sink kind: its `kind` name and how to build it.
#[derive(Debug, Clone, Copy)]
pub struct SinkKind {
    /// The `kind` of `[[sinks]]` entries it serves.
    pub kind: &'static str,
    build: Constructor,
}

impl SinkKind {
    /// The kind implemented by `S`.
    pub const fn of<S: ConfigurableSink>() -> Self {
        Self {
            kind: S::KIND,
            build: build::<S>,
        }
    }
}

fn build<S: ConfigurableSink>(
    entry: &SinkEntry,
    env: &SinkEnv,
) -> Result<Arc<dyn EventSink>, String> {
    let settings = figment::value::Value::from(
        entry
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<figment::value::Dict>(),
    );
    let config: S::Config = settings.deserialize().map_err(|e| {
        // figment's message names the key inside the entry when it knows it.
        let path = e.path.join(".");
        if path.is_empty() {
            e.kind.to_string()
        } else {
            format!("{path}: {}", e.kind)
        }
    })?;
    let sink = S::from_config(&entry.name, config, env).map_err(|e| e.to_string())?;
    Ok(Arc::new(sink))
}

/// The sink kinds compiled into this build.
pub fn kinds() -> &'static [SinkKind] {
    KINDS
}

/// Builds every `[[sinks]]` entry of `config`. An unknown kind, a kind not
/// compiled in, or settings the kind rejects is an error naming the entry.
pub fn build_sinks(config: &Config) -> Result<Vec<Arc<dyn EventSink>>, ConfigError> {
    build_all_with(KINDS, config)
}

fn build_all_with(
    kinds: &[SinkKind],
    config: &Config,
) -> Result<Vec<Arc<dyn EventSink>>, ConfigError> {
    let env = SinkEnv::new(&config.data_dir);
    config
        .sinks
        .iter()
        .map(|entry| build_with(kinds, entry, &env))
        .collect()
}

fn build_with(
    kinds: &[SinkKind],
    entry: &SinkEntry,
    env: &SinkEnv,
) -> Result<Arc<dyn EventSink>, ConfigError> {
    let error = |message: String| ConfigError {
        key: entry.key(),
        message,
    };
    if let Some(kind) = kinds.iter().find(|k| k.kind == entry.kind) {
        return (kind.build)(entry, env).map_err(error);
    }
    let built: Vec<&str> = kinds.iter().map(|k| k.kind).collect();
    let available = if built.is_empty() {
        "this build has no sink kinds".to_owned()
    } else {
        format!("this build has: {}", built.join(", "))
    };
    Err(error(
        match SHIPPED.iter().find(|(kind, _)| *kind == entry.kind) {
            Some((_, feature)) => format!(
                "sink kind {:?} is not in this build (build aurora-server with the \
                 `{feature}` feature); {available}",
                entry.kind
            ),
            None => format!("unknown sink kind {:?}; {available}", entry.kind),
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use async_trait::async_trait;
    use aurora_core::SeqEvent;
    use aurora_core::sink::{SinkConfigError, SinkError};
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};
    use serde::Deserialize;

    use super::*;

    /// A sink kind for the tests: writes nowhere, checks its settings.
    #[derive(Debug)]
    struct Probe {
        name: String,
        path: PathBuf,
        limit: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ProbeConfig {
        path: PathBuf,
        #[serde(default)]
        limit: u32,
    }

    #[async_trait]
    impl EventSink for Probe {
        fn name(&self) -> &str {
            &self.name
        }
        async fn deliver(&self, _: &[SeqEvent]) -> Result<(), SinkError> {
            Ok(())
        }
    }

    impl ConfigurableSink for Probe {
        const KIND: &'static str = "probe";
        type Config = ProbeConfig;
        fn from_config(
            name: &str,
            config: ProbeConfig,
            env: &SinkEnv,
        ) -> Result<Self, SinkConfigError> {
            if config.limit > 10 {
                return Err(SinkConfigError::new("limit: at most 10"));
            }
            Ok(Self {
                name: name.to_owned(),
                path: env.resolve(&config.path),
                limit: config.limit,
            })
        }
    }

    const TEST_KINDS: &[SinkKind] = &[SinkKind::of::<Probe>()];

    fn entries(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError {
                key: e.path.join("."),
                message: e.kind.to_string(),
            })?;
        config.data_dir = PathBuf::from("/srv/aurora");
        Ok(config)
    }

    fn build_all(config: &Config) -> Result<Vec<Arc<dyn EventSink>>, ConfigError> {
        build_all_with(TEST_KINDS, config)
    }

    #[test]
    fn entries_become_sinks_with_their_own_settings() {
        let config = entries(
            r#"
            [[sinks]]
            kind = "probe"
            name = "one"
            path = "events"
            limit = 3

            [[sinks]]
            kind = "probe"
            name = "two"
            start = "oldest"
            batch_size = 50
            max_backoff = "5s"
            path = "/abs"
            "#,
        )
        .unwrap();
        assert_eq!(config.sinks[1].batch_size, 50);
        assert_eq!(config.sinks[0].batch_size, 500);
        let sinks = build_all(&config).unwrap();
        assert_eq!(sinks.len(), 2);
        assert_eq!((sinks[0].name(), sinks[1].name()), ("one", "two"));
        let probe = Probe::from_config(
            "x",
            ProbeConfig {
                path: "events".into(),
                limit: 3,
            },
            &SinkEnv::new("/srv/aurora"),
        )
        .unwrap();
        assert_eq!(
            (probe.path, probe.limit),
            (PathBuf::from("/srv/aurora/events"), 3)
        );
    }

    #[test]
    fn bad_entries_name_the_sink_and_the_problem() {
        for (text, problem) in [
            (
                "kind = \"probe\"\nname = \"a\"\npth = \"x\"",
                "unknown field",
            ),
            ("kind = \"probe\"\nname = \"a\"", "missing field `path`"),
            (
                "kind = \"probe\"\nname = \"a\"\npath = \"x\"\nlimit = 11",
                "at most 10",
            ),
            (
                "kind = \"probe\"\nname = \"a\"\npath = \"x\"\nlimit = \"many\"",
                "limit",
            ),
            ("kind = \"kafka\"\nname = \"a\"", "`sink-kafka` feature"),
            (
                "kind = \"smoke\"\nname = \"a\"",
                "unknown sink kind \"smoke\"",
            ),
        ] {
            let config = entries(&format!("[[sinks]]\n{text}\n")).unwrap();
            let e = build_all(&config).err().unwrap();
            assert!(e.key.starts_with("sinks \"a\""), "{text}: {e}");
            assert!(e.message.contains(problem), "{text}: {e}");
        }
    }
}
