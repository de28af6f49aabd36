//! The NATS sink against a real `nats-server -js` (started on loopback by
//! the test kit): every event of a real event log is published, then the
//! stream is read back and each message checked against the event.

// Test helpers: failing loudly on a broken fixture is the point.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::{self, stream};
use aurora_core::EventSink;
use aurora_core::event::SeqEvent;
use aurora_core::event::encoding::{EventEncoding, PayloadFormat};
use aurora_core::event::json::JsonOptions;
use aurora_sink_nats::{NatsSink, NatsSinkConfig, StreamStorage};
use aurora_storage_testkit::brokers::{self, Broker};
use aurora_storage_testkit::events;

fn config(url: &str) -> NatsSinkConfig {
    toml::from_str(&format!(
        "servers = [\"{url}\"]\nstream = \"EVENTS\"\nsubject_prefix = \"pds.events\"\ntimeout_secs = 5\n"
    ))
    .unwrap()
}

async fn context(broker: &Broker) -> jetstream::Context {
    jetstream::new(async_nats::connect(broker.url()).await.unwrap())
}

/// Every message of stream `name`, in stream order.
async fn read_stream(broker: &Broker, name: &str) -> Vec<StreamMessage> {
    let mut stream = context(broker).await.get_stream(name).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        out.push(stream.get_raw_message(sequence).await.unwrap());
    }
    out
}

fn header<'a>(message: &'a StreamMessage, name: &str) -> &'a str {
    message
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .as_str()
}

/// Checks that the stream holds exactly `events`, each once and (when
/// `in_order`) in `seq` order, on its type's subject, with the message id,
/// headers and payload `encoding` gives.
fn check_stream(
    messages: &[StreamMessage],
    events: &[SeqEvent],
    sink: &NatsSink,
    encoding: EventEncoding,
    in_order: bool,
) {
    let by_seq: BTreeMap<i64, &SeqEvent> = events.iter().map(|e| (e.seq, e)).collect();
    let mut seqs = Vec::new();
    for message in messages {
        let seq: i64 = header(message, "seq").parse().unwrap();
        let event = by_seq[&seq];
        assert_eq!(header(message, "Nats-Msg-Id"), sink.message_id(seq));
        assert_eq!(header(message, "did"), event.did.as_str());
        assert_eq!(header(message, "type"), event.event_type.as_str());
        assert_eq!(
            message.subject.as_str(),
            sink.config().subject(event.event_type)
        );
        let expected = encoding.encode(event).unwrap();
        match encoding {
            EventEncoding::Json(_) => {
                let got: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                let want: serde_json::Value = serde_json::from_slice(&expected).unwrap();
                assert_eq!(got, want, "payload of event {seq}");
            }
            EventEncoding::Frame => assert_eq!(message.payload.as_ref(), expected, "event {seq}"),
        }
        seqs.push(seq);
    }
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "an event is stored twice");
    assert_eq!(
        sorted,
        by_seq.keys().copied().collect::<Vec<_>>(),
        "events missing"
    );
    if in_order {
        assert_eq!(seqs, sorted, "stream order is not seq order");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_events_land_once_in_order_on_their_type_subjects() {
    let Some(broker) = brokers::nats("json_events_land_once_in_order_on_their_type_subjects")
    else {
        return;
    };
    let events = events::event_log(4, 10).await;
    let sink = NatsSink::new(
        "nats-json",
        NatsSinkConfig {
            include_records: true,
            ..config(&broker.url())
        },
    )
    .unwrap();
    assert_eq!(sink.name(), "nats-json");
    for batch in events.chunks(25) {
        sink.deliver(batch).await.unwrap();
    }
    let messages = read_stream(&broker, "EVENTS").await;
    check_stream(
        &messages,
        &events,
        &sink,
        EventEncoding::Json(JsonOptions { records: true }),
        true,
    );
    let subjects: std::collections::BTreeSet<&str> =
        messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "pds.events.account",
            "pds.events.commit",
            "pds.events.identity",
            "pds.events.sync"
        ]
        .into()
    );
    // The stream the sink created.
    let info = context(&broker)
        .await
        .get_stream("EVENTS")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(info.subjects, ["pds.events.>"]);
    assert_eq!(info.duplicate_window, Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_through_a_small_window_and_redelivery_is_deduplicated() {
    let Some(broker) =
        brokers::nats("frames_through_a_small_window_and_redelivery_is_deduplicated")
    else {
        return;
    };
    let events = events::event_log(3, 6).await;
    let sink = NatsSink::new(
        "nats-frames",
        NatsSinkConfig {
            payload: PayloadFormat::Frames,
            max_in_flight: 3,
            storage: StreamStorage::Memory,
            ..config(&broker.url())
        },
    )
    .unwrap();
    sink.deliver(&events).await.unwrap();
    // The runner redelivers after a failure it cannot tell apart from loss.
    sink.deliver(&events[..events.len() / 2]).await.unwrap();
    check_stream(
        &read_stream(&broker, "EVENTS").await,
        &events,
        &sink,
        EventEncoding::Frame,
        true,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_is_down_fails_delivery_and_a_later_one_takes_it() {
    let test = "a_server_that_is_down_fails_delivery_and_a_later_one_takes_it";
    let port = brokers::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let sink = NatsSink::new("nats-down", config(&url)).unwrap();
    let events = events::event_log(2, 4).await;
    let err = sink.deliver(&events).await.unwrap_err().to_string();
    assert!(err.contains("connecting to NATS servers"), "{err}");
    let Some(broker) = brokers::nats_on(test, port) else {
        return;
    };
    sink.deliver(&events).await.unwrap();
    check_stream(
        &read_stream(&broker, "EVENTS").await,
        &events,
        &sink,
        EventEncoding::Json(JsonOptions::default()),
        true,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_restart_mid_stream_is_retried_and_nothing_is_skipped() {
    let Some(mut broker) =
        brokers::nats("a_server_restart_mid_stream_is_retried_and_nothing_is_skipped")
    else {
        return;
    };
    let events = events::event_log(3, 6).await;
    let (first, rest) = events.split_at(events.len() / 2);
    let sink = NatsSink::new(
        "nats-restart",
        NatsSinkConfig {
            timeout_secs: 2,
            ..config(&broker.url())
        },
    )
    .unwrap();
    sink.deliver(first).await.unwrap();
    broker.stop();
    assert!(
        sink.deliver(rest).await.is_err(),
        "delivery to a stopped server fails"
    );
    // The file store survives the restart.
    broker.start().unwrap();
    sink.deliver(rest).await.unwrap();
    check_stream(
        &read_stream(&broker, "EVENTS").await,
        &events,
        &sink,
        EventEncoding::Json(JsonOptions::default()),
        true,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_rejects_messages_holds_the_batch_until_it_accepts_them() {
    let Some(broker) =
        brokers::nats("a_stream_that_rejects_messages_holds_the_batch_until_it_accepts_them")
    else {
        return;
    };
    let js = context(&broker).await;
    let mut stream_config = stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["pds.events.*".into()],
        // Commits are larger: the server refuses them.
        max_message_size: 300,
        ..Default::default()
    };
    js.create_stream(stream_config.clone()).await.unwrap();
    let sink = NatsSink::new(
        "nats-reject",
        NatsSinkConfig {
            create_stream: false,
            ..config(&broker.url())
        },
    )
    .unwrap();
    let events = events::event_log(2, 5).await;
    for _ in 0..2 {
        let err = sink.deliver(&events).await.unwrap_err().to_string();
        assert!(err.contains("publishing event"), "{err}");
    }
    stream_config.max_message_size = -1;
    js.update_stream(stream_config).await.unwrap();
    sink.deliver(&events).await.unwrap();
    // Small events the server took in the failed attempts are not stored
    // again; they were stored before the commits they follow.
    check_stream(
        &read_stream(&broker, "EVENTS").await,
        &events,
        &sink,
        EventEncoding::Json(JsonOptions::default()),
        false,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_stream_must_capture_the_subjects_and_may_have_to_exist() {
    let Some(broker) =
        brokers::nats("an_existing_stream_must_capture_the_subjects_and_may_have_to_exist")
    else {
        return;
    };
    let events = events::event_log(1, 1).await;
    let missing = NatsSink::new(
        "nats-nocreate",
        NatsSinkConfig {
            create_stream: false,
            ..config(&broker.url())
        },
    )
    .unwrap();
    let err = missing.deliver(&events).await.unwrap_err().to_string();
    assert!(err.contains("stream \"EVENTS\" does not exist"), "{err}");

    context(&broker)
        .await
        .create_stream(stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["pds.events.commit".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let narrow = NatsSink::new("nats-narrow", config(&broker.url())).unwrap();
    let err = narrow.deliver(&events).await.unwrap_err().to_string();
    assert!(
        err.contains("does not capture \"pds.events.sync\""),
        "{err}"
    );
}

#[test]
fn malformed_configs_are_refused_with_the_key_named() {
    let base = config("nats://127.0.0.1:4222");
    for (bad, wanted) in [
        (
            NatsSinkConfig {
                servers: vec![],
                ..base.clone()
            },
            "servers: at least one",
        ),
        (
            NatsSinkConfig {
                stream: "bad.name".into(),
                ..base.clone()
            },
            "stream: \"bad.name\"",
        ),
        (
            NatsSinkConfig {
                subject_prefix: "events.>".into(),
                ..base.clone()
            },
            "subject_prefix",
        ),
        (
            NatsSinkConfig {
                payload: PayloadFormat::Frames,
                include_records: true,
                ..base.clone()
            },
            "include_records",
        ),
    ] {
        let err = NatsSink::new("bad", bad).unwrap_err().to_string();
        assert!(err.contains(wanted), "{err}");
    }
    let err = toml::from_str::<NatsSinkConfig>("servers = [\"a:1\"]\nsubject = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `subject`"), "{err}");
}
