//! The Kafka sink against a real Kafka-protocol broker (tansu, started on
//! loopback by the test kit): every event of a real event log is produced,
//! then the topic is consumed and each message checked against the event.

// Test helpers: failing loudly on a broken fixture is the point.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use aurora_core::EventSink;
use aurora_core::event::SeqEvent;
use aurora_core::event::encoding::{EventEncoding, PayloadFormat};
use aurora_core::event::json::JsonOptions;
use aurora_sink_kafka::{Compression, KafkaSink, KafkaSinkConfig};
use aurora_storage_testkit::{brokers, events};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::record::RecordAndOffset;

fn config(bootstrap: &str, topic: &str) -> KafkaSinkConfig {
    toml::from_str(&format!(
        "brokers = [\"{bootstrap}\"]\ntopic = \"{topic}\"\ntimeout_secs = 10\n"
    ))
    .unwrap()
}

/// Delivers `events` in runner-sized batches.
async fn deliver_all(sink: &KafkaSink, events: &[SeqEvent]) {
    for batch in events.chunks(25) {
        sink.deliver(batch).await.unwrap();
    }
}

/// Every record of every partition of `topic`, by partition.
async fn consume(bootstrap: &str, topic: &str) -> BTreeMap<i32, Vec<RecordAndOffset>> {
    let client = ClientBuilder::new(vec![bootstrap.to_owned()])
        .build()
        .await
        .unwrap();
    let partitions = client
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == topic)
        .unwrap_or_else(|| panic!("topic {topic} missing"))
        .partitions;
    let mut out = BTreeMap::new();
    for partition in partitions {
        let pc = client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let mut records = Vec::new();
        let mut offset = 0;
        loop {
            let (batch, high_watermark) =
                pc.fetch_records(offset, 1..10_000_000, 500).await.unwrap();
            if let Some(last) = batch.last() {
                offset = last.offset + 1;
            }
            records.extend(batch);
            if offset >= high_watermark {
                break;
            }
        }
        out.insert(partition, records);
    }
    out
}

fn header(record: &RecordAndOffset, name: &str) -> String {
    String::from_utf8(record.record.headers[name].clone()).unwrap()
}

/// Checks that the topic holds exactly `events` (each once), every repo in
/// one partition in `seq` order, with the key, headers, timestamp and value
/// `encoding` gives.
fn check_topic(
    topic: &BTreeMap<i32, Vec<RecordAndOffset>>,
    events: &[SeqEvent],
    encoding: EventEncoding,
) {
    let by_seq: BTreeMap<i64, &SeqEvent> = events.iter().map(|e| (e.seq, e)).collect();
    let mut seen = BTreeSet::new();
    let mut partition_of_did: BTreeMap<String, i32> = BTreeMap::new();
    for (&partition, records) in topic {
        let mut last_seq_of_did: BTreeMap<String, i64> = BTreeMap::new();
        for record in records {
            let seq: i64 = header(record, "seq").parse().unwrap();
            let event = by_seq[&seq];
            let did = String::from_utf8(record.record.key.clone().unwrap()).unwrap();
            assert_eq!(did, event.did.as_str(), "key of event {seq}");
            assert_eq!(header(record, "type"), event.event_type.as_str());
            // The record's create time is the event's time (tansu may
            // round it by a millisecond).
            let skew = record.record.timestamp.timestamp_millis() - event.time.timestamp_millis();
            assert!(skew.abs() <= 1, "timestamp of event {seq} off by {skew} ms");
            let value = record.record.value.as_deref().unwrap();
            let expected = encoding.encode(event).unwrap();
            match encoding {
                EventEncoding::Json(_) => {
                    let got: serde_json::Value = serde_json::from_slice(value).unwrap();
                    let want: serde_json::Value = serde_json::from_slice(&expected).unwrap();
                    assert_eq!(got, want, "value of event {seq}");
                    assert_eq!(got["seq"], seq);
                    assert_eq!(got["did"], did);
                }
                EventEncoding::Frame => assert_eq!(value, expected, "frame of event {seq}"),
            }
            assert!(seen.insert(seq), "event {seq} twice");
            assert_eq!(
                *partition_of_did.entry(did.clone()).or_insert(partition),
                partition,
                "{did} in two partitions"
            );
            let last = last_seq_of_did.insert(did.clone(), seq);
            assert!(last < Some(seq), "{did}: {seq} after {last:?}");
        }
    }
    assert_eq!(seen, by_seq.keys().copied().collect(), "events missing");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_events_land_once_in_order_per_repo_with_record_bodies() {
    let Some(broker) = brokers::kafka("json_events_land_once_in_order_per_repo_with_record_bodies")
    else {
        return;
    };
    let events = events::event_log(5, 12).await;
    let config = KafkaSinkConfig {
        include_records: true,
        compression: Compression::Gzip,
        partitions: 3,
        // Several produce requests per partition and batch.
        max_batch_events: 4,
        ..config(&broker.url(), "aurora.events")
    };
    let sink = KafkaSink::new("kafka-json", config).unwrap();
    assert_eq!(sink.name(), "kafka-json");
    deliver_all(&sink, &events).await;
    let topic = consume(&broker.url(), "aurora.events").await;
    assert_eq!(
        topic.len(),
        3,
        "the sink created the topic with 3 partitions"
    );
    assert!(
        topic.values().filter(|r| !r.is_empty()).count() > 1,
        "repos spread over partitions"
    );
    check_topic(
        &topic,
        &events,
        EventEncoding::Json(JsonOptions { records: true }),
    );
    // Record bodies are there: every created post carries its text.
    let creates_with_text = topic
        .values()
        .flatten()
        .filter_map(|r| {
            serde_json::from_slice::<serde_json::Value>(r.record.value.as_deref()?).ok()
        })
        .filter(|v| v["type"] == "commit")
        .flat_map(|v| v["ops"].as_array().cloned().unwrap_or_default())
        .filter(|op| op["action"] == "create")
        .inspect(|op| assert_eq!(op["record"]["$type"], "app.bsky.feed.post", "{op}"))
        .count();
    assert!(creates_with_text > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_land_byte_for_byte_with_snappy_and_small_requests() {
    let Some(broker) = brokers::kafka("frames_land_byte_for_byte_with_snappy_and_small_requests")
    else {
        return;
    };
    let events = events::event_log(3, 8).await;
    let config = KafkaSinkConfig {
        payload: PayloadFormat::Frames,
        compression: Compression::Snappy,
        partitions: 2,
        // About one commit a request.
        max_batch_bytes: 2_000,
        ..config(&broker.url(), "frames")
    };
    let sink = KafkaSink::new("kafka-frames", config).unwrap();
    deliver_all(&sink, &events).await;
    check_topic(
        &consume(&broker.url(), "frames").await,
        &events,
        EventEncoding::Frame,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_is_down_fails_delivery_and_a_later_one_takes_it() {
    let test = "a_broker_that_is_down_fails_delivery_and_a_later_one_takes_it";
    let port = brokers::free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let sink = KafkaSink::new(
        "kafka-down",
        KafkaSinkConfig {
            timeout_secs: 2,
            ..config(&bootstrap, "late")
        },
    )
    .unwrap();
    let events = events::event_log(2, 4).await;
    let started = std::time::Instant::now();
    let err = sink.deliver(&events).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "bounded by the timeout"
    );
    assert!(
        err.contains(&bootstrap) || err.contains("timed out"),
        "the error names the brokers or the timeout: {err}"
    );
    let Some(broker) = brokers::kafka_on(test, port) else {
        return;
    };
    // The runner retries the same batch; now it goes through.
    sink.deliver(&events).await.unwrap();
    check_topic(
        &consume(&broker.url(), "late").await,
        &events,
        EventEncoding::Json(JsonOptions::default()),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_mid_stream_is_retried_and_nothing_is_skipped() {
    let Some(mut broker) =
        brokers::kafka("a_broker_restart_mid_stream_is_retried_and_nothing_is_skipped")
    else {
        return;
    };
    let events = events::event_log(3, 6).await;
    let (first, rest) = events.split_at(events.len() / 2);
    let sink = KafkaSink::new(
        "kafka-restart",
        KafkaSinkConfig {
            timeout_secs: 2,
            ..config(&broker.url(), "restarts")
        },
    )
    .unwrap();
    sink.deliver(first).await.unwrap();
    broker.stop();
    assert!(
        sink.deliver(rest).await.is_err(),
        "delivery to a stopped broker fails"
    );
    // Memory storage: the restarted broker starts empty, so the runner's
    // retry of the failed batch is all it holds.
    broker.start().unwrap();
    sink.deliver(rest).await.unwrap();
    check_topic(
        &consume(&broker.url(), "restarts").await,
        rest,
        EventEncoding::Json(JsonOptions::default()),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_topic_is_an_error_when_the_sink_may_not_create_it() {
    let Some(broker) =
        brokers::kafka("a_missing_topic_is_an_error_when_the_sink_may_not_create_it")
    else {
        return;
    };
    let sink = KafkaSink::new(
        "kafka-nocreate",
        KafkaSinkConfig {
            create_topic: false,
            timeout_secs: 5,
            ..config(&broker.url(), "absent")
        },
    )
    .unwrap();
    let events = events::event_log(1, 1).await;
    let err = sink.deliver(&events).await.unwrap_err().to_string();
    assert!(err.contains("topic \"absent\" does not exist"), "{err}");
}

#[test]
fn malformed_configs_are_refused_with_the_key_named() {
    let base = config("127.0.0.1:9092", "t");
    for (bad, wanted) in [
        (
            KafkaSinkConfig {
                brokers: vec!["no-port".into()],
                ..base.clone()
            },
            "brokers: \"no-port\" is not host:port",
        ),
        (
            KafkaSinkConfig {
                topic: "bad topic".into(),
                ..base.clone()
            },
            "topic: \"bad topic\"",
        ),
        (
            KafkaSinkConfig {
                payload: PayloadFormat::Frames,
                include_records: true,
                ..base.clone()
            },
            "include_records",
        ),
    ] {
        let err = KafkaSink::new("bad", bad).unwrap_err().to_string();
        assert!(err.contains(wanted), "{err}");
    }
    let err = toml::from_str::<KafkaSinkConfig>("brokers = [\"a:1\"]\ntopic = \"t\"\nbatch = 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `batch`"), "{err}");
}
