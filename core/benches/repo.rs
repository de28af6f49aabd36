//! Repo engine benchmarks: MST inserts, one record write on a large repo
//! (MST update + signed commit), CAR export and import, and a DAG-CBOR
//! round trip of a typical post.
//!
//! `cargo bench -p aurora-core --bench repo`

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use aurora_core::cid::Cid;
use aurora_core::crypto::{Curve, SigningKey};
use aurora_core::data::{DAG_CBOR, cid_for, decode_strict, encode, ipld_to_json, json_to_ipld};
use aurora_core::repo::Mst;
use aurora_core::repo::car::{car_bytes, load_repo};
use aurora_core::repo::commit::UnsignedCommit;
use aurora_core::syntax::{Did, Tid, TidClock};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const RECORDS: usize = 100_000;

fn post_json(i: usize) -> serde_json::Value {
    serde_json::json!({
        "$type": "app.bsky.feed.post",
        "text": format!("post number {i}: hello from the benchmark, with a bit of text to be realistic"),
        "createdAt": "2026-11-25T10:00:00.000Z",
        "langs": ["en"],
    })
}

/// Record keys and record blocks for `n` posts.
fn records(n: usize) -> Vec<(String, Cid, Bytes)> {
    let clock = TidClock::with_clock_id(1);
    (0..n)
        .map(|i| {
            let bytes = Bytes::from(encode(&json_to_ipld(&post_json(i)).unwrap()).unwrap());
            let cid = cid_for(DAG_CBOR, &bytes);
            (format!("app.bsky.feed.post/{}", clock.next()), cid, bytes)
        })
        .collect()
}

fn mst_benches(c: &mut Criterion) {
    let recs = records(RECORDS);
    let mut group = c.benchmark_group("mst");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("insert 100k keys one by one", |b| {
        b.iter(|| {
            let mut mst = Mst::new();
            for (k, v, _) in &recs {
                mst = mst.insert(k, *v).unwrap();
            }
            black_box(mst.root_cid())
        });
    });
    group.bench_function("build 100k keys at once", |b| {
        b.iter(|| {
            black_box(
                Mst::from_entries(recs.iter().map(|(k, v, _)| (k.as_str(), *v)))
                    .unwrap()
                    .root_cid(),
            )
        });
    });
    group.finish();
}

fn write_benches(c: &mut Criterion) {
    let recs = records(RECORDS);
    let base = Mst::from_entries(recs.iter().map(|(k, v, _)| (k.as_str(), *v))).unwrap();
    base.root_cid();
    base.mark_stored();
    let key = SigningKey::generate(Curve::K256);
    let did = Did::parse("did:plc:benchmarkbenchmarkbench").unwrap();
    let clock = TidClock::with_clock_id(2);
    let record = Bytes::from(encode(&json_to_ipld(&post_json(0)).unwrap()).unwrap());
    let record_cid = cid_for(DAG_CBOR, &record);
    let mut group = c.benchmark_group("write");
    group.bench_function(
        "one record on a 100k-record repo (MST update + signed commit)",
        |b| {
            b.iter(|| {
                let rev: Tid = clock.next();
                let mst = base
                    .insert(&format!("app.bsky.feed.post/{rev}"), record_cid)
                    .unwrap();
                let commit = UnsignedCommit {
                    did: did.clone(),
                    data: mst.root_cid(),
                    rev,
                    prev: None,
                }
                .sign(&key);
                let (commit_cid, _) = commit.to_block();
                black_box((commit_cid, mst.unstored_blocks().len()))
            });
        },
    );
    group.finish();
}

fn car_benches(c: &mut Criterion) {
    let recs = records(RECORDS);
    let mst = Mst::from_entries(recs.iter().map(|(k, v, _)| (k.as_str(), *v))).unwrap();
    let key = SigningKey::generate(Curve::K256);
    let did = Did::parse("did:plc:benchmarkbenchmarkbench").unwrap();
    let commit = UnsignedCommit {
        did,
        data: mst.root_cid(),
        rev: TidClock::with_clock_id(3).next(),
        prev: None,
    }
    .sign(&key);
    let (commit_cid, commit_bytes) = commit.to_block();
    let mut blocks = vec![(commit_cid, commit_bytes)];
    blocks.extend(mst.blocks().unwrap());
    blocks.extend(recs.iter().map(|(_, c, b)| (*c, b.clone())));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("car");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("export a 100k-record repo", |b| {
        b.iter_batched(
            || blocks.clone(),
            |blocks| {
                black_box(
                    runtime
                        .block_on(car_bytes(commit_cid, blocks))
                        .unwrap()
                        .len(),
                )
            },
            BatchSize::LargeInput,
        );
    });
    let car = runtime
        .block_on(car_bytes(commit_cid, blocks.clone()))
        .unwrap();
    let public = key.public_key();
    group.bench_function("import and verify a 100k-record repo", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(load_repo(&car[..], Some(&public)))
                    .unwrap()
                    .commit_cid,
            )
        });
    });
    group.finish();
}

fn cbor_benches(c: &mut Criterion) {
    let post = post_json(42);
    c.bench_function(
        "dag-cbor round trip of a post (JSON -> CBOR -> JSON)",
        |b| {
            b.iter(|| {
                let bytes = encode(&json_to_ipld(black_box(&post)).unwrap()).unwrap();
                black_box(ipld_to_json(&decode_strict(&bytes).unwrap()).unwrap())
            });
        },
    );
}

criterion_group!(
    benches,
    cbor_benches,
    write_benches,
    mst_benches,
    car_benches
);
criterion_main!(benches);
