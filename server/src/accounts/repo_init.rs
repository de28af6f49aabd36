//! The first commit of a new repo: an empty tree, signed.

use aurora_core::crypto::SigningKey;
use aurora_core::event::{CommitBody, EventType};
use aurora_core::repo::car::{CarError, car_bytes};
use aurora_core::repo::commit::UnsignedCommit;
use aurora_core::repo::mst::empty_root;
use aurora_core::store::CommitWrite;
use aurora_core::syntax::{Datetime, Did, TidClock};
use bytes::Bytes;

/// The commit that creates `did`'s repo: the empty MST node and a commit
/// over it signed with `key`, with its `#commit` event (no ops; `blocks`
/// holds the commit and the empty node, so a relay can verify it).
pub async fn initial_commit(did: &Did, key: &SigningKey) -> Result<CommitWrite, CarError> {
    let (data, node) = empty_root();
    let rev = TidClock::global().next();
    let commit = UnsignedCommit::new(did.clone(), data, rev.clone()).sign(key);
    let (root, commit_block) = commit.to_block();
    let blocks = vec![(root, commit_block), (data, node)];
    let car = car_bytes(root, blocks.clone()).await?;
    let body = CommitBody {
        repo: did.clone(),
        commit: root,
        rev: rev.clone(),
        since: None,
        blocks: Bytes::from(car),
        ops: Vec::new(),
        blobs: Vec::new(),
        prev_data: None,
        time: Datetime::now(),
    };
    Ok(CommitWrite {
        did: did.clone(),
        expected_root: None,
        root,
        rev,
        blocks,
        records: Vec::new(),
        event_type: EventType::Commit,
        event_payload: body.to_payload(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use aurora_core::crypto::Curve;
    use aurora_core::repo::car::load_repo_bytes;
    use aurora_core::repo::commit::SignedCommit;

    use super::*;

    #[tokio::test]
    async fn the_first_commit_is_a_signed_empty_repo() {
        let key = SigningKey::generate(Curve::K256);
        let did = Did::parse("did:plc:abcdefghijklmnopqrstuvwx").unwrap();
        let write = initial_commit(&did, &key).await.unwrap();
        let (_, commit_bytes) = &write.blocks[0];
        let commit = SignedCommit::from_block(commit_bytes).unwrap();
        commit.verify(&key.public_key()).unwrap();
        assert_eq!(commit.did, did);
        assert_eq!(commit.data, empty_root().0);
        // The event's CAR is a complete (empty) repo.
        let body = aurora_core::event::decode_payload(&write.event_payload).unwrap();
        let aurora_core::data::Ipld::Bytes(car) = &body["blocks"] else {
            panic!("blocks")
        };
        let repo = load_repo_bytes(car, Some(&key.public_key())).unwrap();
        assert_eq!(repo.commit.rev, write.rev);
        assert!(repo.mst.is_empty());
    }
}
