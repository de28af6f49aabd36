//! The Kafka and NATS sink kinds as the server builds them from
//! `aurora.toml` (with the `sink-kafka` / `sink-nats` features): good
//! entries become sinks, bad ones stop start-up with the sink named.

#![cfg(any(feature = "sink-kafka", feature = "sink-nats"))]
#![allow(clippy::unwrap_used)]

use aurora_server::config::{Config, ConfigError};
use aurora_server::sinks::{build_sinks, kinds};

fn load(sinks: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aurora.toml");
    let text = format!(
        "data_dir = \"{}\"\ndatabase_url = \"memory:\"\n{sinks}",
        dir.path().join("data").display()
    );
    std::fs::write(&file, text).unwrap();
    Config::load(Some(&file))
}

/// The message start-up fails with for `sinks`.
fn refusal(sinks: &str) -> String {
    let error = match load(sinks) {
        Ok(config) => build_sinks(&config).err().unwrap(),
        Err(e) => e,
    };
    error.to_string()
}

#[cfg(feature = "sink-kafka")]
#[test]
fn kafka_entries_build_and_bad_ones_are_refused() {
    assert!(kinds().iter().any(|k| k.kind == "kafka"));
    let config = load(
        r#"
        [[sinks]]
        kind = "kafka"
        name = "events"
        brokers = ["127.0.0.1:9092"]
        topic = "atproto.events"
        payload = "frames"
        compression = "snappy"
        batch_size = 200

        [sinks.sasl]
        mechanism = "scram-sha-256"
        username = "pds"
        password = "hunter2"
        "#,
    )
    .unwrap();
    let sinks = build_sinks(&config).unwrap();
    assert_eq!(sinks[0].name(), "events");
    assert!(!config.to_redacted_toml().contains("hunter2"));

    for (settings, wanted) in [
        ("topic = \"t\"", "missing field"),
        (
            "brokers = [\"k:9092\"]\ntopic = \"t\"\npartition = 3",
            "partition: unknown field: found `partition`",
        ),
        (
            "brokers = [\"k\"]\ntopic = \"t\"",
            "brokers: \"k\" is not host:port",
        ),
        (
            "brokers = [\"k:9092\"]\ntopic = \"a topic\"",
            "topic: \"a topic\" is not a Kafka topic name",
        ),
        (
            "brokers = [\"k:9092\"]\ntopic = \"t\"\npayload = \"frames\"\ninclude_records = true",
            "include_records: applies only to payload = \"json\"",
        ),
        (
            "brokers = [\"k:9092\"]\ntopic = \"t\"\ncompression = \"brotli\"",
            "compression: unknown variant: found `brotli`",
        ),
    ] {
        let message = refusal(&format!(
            "[[sinks]]\nkind = \"kafka\"\nname = \"k\"\n{settings}\n"
        ));
        assert!(
            message.starts_with("sinks \"k\" (kind kafka)") && message.contains(wanted),
            "{settings}: {message}"
        );
    }
}

#[cfg(feature = "sink-nats")]
#[test]
fn nats_entries_build_and_bad_ones_are_refused() {
    assert!(kinds().iter().any(|k| k.kind == "nats"));
    let config = load(
        r#"
        [[sinks]]
        kind = "nats"
        name = "bus"
        servers = ["nats://127.0.0.1:4222"]
        stream = "ATPROTO"
        subject_prefix = "pds.events"
        include_records = true
        token = "s3cret"
        "#,
    )
    .unwrap();
    let sinks = build_sinks(&config).unwrap();
    assert_eq!(sinks[0].name(), "bus");
    assert!(!config.to_redacted_toml().contains("s3cret"));

    for (settings, wanted) in [
        (
            "servers = []",
            "servers: at least one server URL is required",
        ),
        (
            "servers = [\"http://n:4222\"]",
            "servers: \"http://n:4222\"",
        ),
        (
            "servers = [\"n:4222\"]\nstream = \"a.b\"",
            "stream: \"a.b\" is not a stream name",
        ),
        (
            "servers = [\"n:4222\"]\nsubject_prefix = \"events.>\"",
            "subject_prefix: \"events.>\" is not a subject",
        ),
        ("servers = [\"n:4222\"]\nuser = \"u\"", "user and password"),
        (
            "servers = [\"n:4222\"]\nroot_certificates = \"missing-ca.pem\"",
            "missing-ca.pem does not exist",
        ),
        (
            "servers = [\"n:4222\"]\nsubject = \"x\"",
            "subject: unknown field: found `subject`",
        ),
    ] {
        let message = refusal(&format!(
            "[[sinks]]\nkind = \"nats\"\nname = \"n\"\n{settings}\n"
        ));
        assert!(
            message.starts_with("sinks \"n\" (kind nats)") && message.contains(wanted),
            "{settings}: {message}"
        );
    }
}
