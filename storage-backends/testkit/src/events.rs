//! A realistic event log for event-sink tests: real signed commits of
//! several repos (creates, updates and deletes of records, built by the
//! repo engine exactly as the server builds them), interleaved with
//! `#identity`, `#account` and `#sync` events, numbered from 1.

use aurora_core::crypto::{Curve, SigningKey};
use aurora_core::data::{Ipld, json_to_ipld};
use aurora_core::event::{AccountBody, EventType, IdentityBody, SeqEvent, SyncBody};
use aurora_core::repo::mst::Mst;
use aurora_core::repo::{RecordChange, RepoHead, WriteAction, car_bytes, prepare_commit};
use aurora_core::syntax::{Datetime, Did, TidClock};
use bytes::Bytes;
use chrono::Utc;

use crate::fixtures::{handle, nsid, rkey};

/// One repo whose commits the log holds.
struct Repo {
    did: Did,
    key: SigningKey,
    head: Option<RepoHead>,
    tree: Mst,
    posts: u32,
}

/// The log being built.
struct EventLog {
    clock: TidClock,
    events: Vec<SeqEvent>,
}

fn post(text: &str) -> Ipld {
    json_to_ipld(&serde_json::json!({
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": "2026-12-01T12:00:00.000Z",
    }))
    .unwrap()
}

impl EventLog {
    fn push(&mut self, did: &Did, event_type: EventType, payload: Bytes) {
        self.events.push(SeqEvent {
            seq: i64::try_from(self.events.len()).unwrap() + 1,
            did: did.clone(),
            event_type,
            time: Utc::now(),
            payload,
        });
    }

    async fn commit(&mut self, repo: &mut Repo, changes: &[RecordChange]) {
        let prepared = prepare_commit(
            &repo.did,
            &repo.key,
            repo.head.as_ref(),
            &repo.tree,
            changes,
            &self.clock,
        )
        .await
        .unwrap();
        prepared.tree.mark_stored();
        repo.head = Some(RepoHead {
            commit: prepared.commit,
            rev: prepared.rev.clone(),
            data: prepared.tree.root_cid(),
        });
        repo.tree = prepared.tree;
        if changes.is_empty() {
            // A reset: the new commit is announced by `#sync` alone.
            let (cid, block) = prepared.write.blocks[0].clone();
            let body = SyncBody {
                did: repo.did.clone(),
                blocks: Bytes::from(car_bytes(cid, [(cid, block)]).await.unwrap()),
                rev: prepared.rev,
                time: Datetime::now(),
            };
            self.push(&repo.did, EventType::Sync, body.to_payload());
        } else {
            let payload = prepared.write.event_payload.clone();
            self.push(&repo.did, EventType::Commit, payload);
        }
    }

    /// A commit of `repo` that creates `count` posts (and updates and deletes
    /// earlier ones when there are some).
    async fn write_posts(&mut self, repo: &mut Repo, count: u32) {
        let mut changes = Vec::new();
        for _ in 0..count {
            repo.posts += 1;
            changes.push(RecordChange {
                action: WriteAction::Create,
                collection: nsid("app.bsky.feed.post"),
                rkey: rkey(&format!("post{}", repo.posts)),
                record: Some(post(&format!("post {} of {}", repo.posts, repo.did))),
            });
        }
        if repo.posts > count + 1 {
            changes.push(RecordChange {
                action: WriteAction::Update,
                collection: nsid("app.bsky.feed.post"),
                rkey: rkey("post1"),
                record: Some(post(&format!("edited at {}", repo.posts))),
            });
        }
        if repo.posts > count + 2 && repo.posts.is_multiple_of(3) {
            let gone = repo.posts - count;
            changes.push(RecordChange {
                action: WriteAction::Delete,
                collection: nsid("app.bsky.feed.post"),
                rkey: rkey(&format!("post{gone}")),
                record: None,
            });
        }
        self.commit(repo, &changes).await;
    }
}

/// An event log over `repos` repos (`did:plc:sinkrepo<i>`), `rounds`
/// rounds long: each round, every repo commits (creating posts, updating
/// and deleting earlier ones), and now and then a repo's handle changes
/// (`#identity`), its status changes (`#account`) or it is reset (an empty
/// commit and `#sync`). Events are numbered 1, 2, ... in log order.
pub async fn event_log(repos: usize, rounds: usize) -> Vec<SeqEvent> {
    let mut log = EventLog {
        clock: TidClock::new(),
        events: Vec::new(),
    };
    let mut all: Vec<Repo> = (0..repos)
        .map(|i| Repo {
            did: Did::parse(format!("did:plc:sinkrepo{i}")).unwrap(),
            key: SigningKey::generate(Curve::K256),
            head: None,
            tree: Mst::new(),
            posts: 0,
        })
        .collect();
    for round in 0..rounds {
        for (i, repo) in all.iter_mut().enumerate() {
            log.write_posts(repo, 1 + u32::try_from((round + i) % 3).unwrap())
                .await;
            match (round + i) % 7 {
                2 => {
                    let body = IdentityBody {
                        did: repo.did.clone(),
                        handle: Some(handle(&format!("repo{i}r{round}"))),
                        time: Datetime::now(),
                    };
                    log.push(&repo.did, EventType::Identity, body.to_payload());
                }
                4 => {
                    let body = AccountBody {
                        did: repo.did.clone(),
                        active: round % 2 == 0,
                        status: (round % 2 == 1).then(|| "deactivated".to_owned()),
                        time: Datetime::now(),
                    };
                    log.push(&repo.did, EventType::Account, body.to_payload());
                }
                6 => log.commit(repo, &[]).await,
                _ => {}
            }
        }
    }
    log.events
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use aurora_core::event::decode_payload;

    use super::*;

    #[tokio::test]
    async fn the_log_has_every_event_type_in_seq_order() {
        let events = event_log(3, 8).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=i64::try_from(events.len()).unwrap()).collect::<Vec<_>>()
        );
        let types: BTreeSet<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            BTreeSet::from(["account", "commit", "identity", "sync"])
        );
        let dids: BTreeSet<&str> = events.iter().map(|e| e.did.as_str()).collect();
        assert_eq!(dids.len(), 3);
        let mut actions = BTreeSet::new();
        for event in &events {
            let body = decode_payload(&event.payload).unwrap();
            if event.event_type == EventType::Commit {
                let Some(Ipld::List(ops)) = body.get("ops") else {
                    panic!("commit without ops")
                };
                for op in ops {
                    let Ipld::Map(op) = op else { panic!() };
                    if let Some(Ipld::String(action)) = op.get("action") {
                        actions.insert(action.clone());
                    }
                }
            }
        }
        assert_eq!(
            actions,
            BTreeSet::from(["create".into(), "delete".into(), "update".into()])
        );
    }
}
