use super::*;
use crate::crypto::{CryptoError, SigningKey};
use crate::identity::plc::{LegacyCreate, Tombstone, sign_operation};
use chrono::{TimeDelta, TimeZone};
use proptest::prelude::*;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(Curve::K256, &[n; 32]).unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(minutes)
}

fn handle(h: &str) -> Handle {
    Handle::parse(h).unwrap()
}

/// The keys of one account: rotation keys by authority, and the atproto
/// signing key.
struct Account {
    /// rotationKeys[0]: the user's recovery key.
    recovery: SigningKey,
    /// rotationKeys[1]: the PDS's rotation key.
    pds: SigningKey,
    signing: SigningKey,
}

fn account() -> Account {
    Account {
        recovery: key(1),
        pds: key(2),
        signing: key(3),
    }
}

impl Account {
    fn rotation(&self) -> Vec<PublicKey> {
        vec![self.recovery.public_key(), self.pds.public_key()]
    }

    fn genesis(&self) -> SignedOperation {
        Operation::Plc(PlcOperation::atproto(
            &self.rotation(),
            &self.signing.public_key(),
            &handle("alice.test"),
            "https://pds.test",
            None,
        ))
        .sign(&self.pds)
    }

    /// A log holding the genesis, accepted at `t0`.
    fn log(&self) -> PlcLog {
        PlcLog::create(self.genesis(), t0()).unwrap()
    }
}

/// An update of the log's current state with a new handle, after `prev`.
fn rename(log: &PlcLog, prev: Cid, new_handle: &str) -> Operation {
    let mut op = log.document().unwrap().to_update(prev);
    op.also_known_as = vec![format!("at://{new_handle}")];
    Operation::Plc(op)
}

fn head_cid(log: &PlcLog) -> Cid {
    log.head().unwrap().cid
}

#[test]
fn genesis_then_two_updates() {
    let acct = account();
    let mut log = acct.log();
    let did = log.did().clone();
    assert_eq!(did, acct.genesis().did().unwrap());
    assert_eq!(log.entries().len(), 1);
    assert_eq!(log.entries()[0].cid, acct.genesis().cid());

    let doc = log.document().unwrap();
    assert_eq!(doc.did, did);
    assert_eq!(doc.handle(), Some(handle("alice.test")));
    assert_eq!(doc.pds_endpoint(), Some("https://pds.test"));
    assert_eq!(doc.atproto_signing_key(), Some(acct.signing.public_key()));
    assert_eq!(doc.rotation_keys, acct.rotation());

    let first = rename(&log, head_cid(&log), "alice2.test").sign(&acct.pds);
    let applied = log.apply(first.clone(), at(1)).unwrap();
    assert_eq!(applied.cid, first.cid());
    assert!(applied.nullified.is_empty());
    assert_eq!(
        log.document().unwrap().handle(),
        Some(handle("alice2.test"))
    );

    // The second update moves the PDS and is signed by the recovery key.
    let mut second = log.document().unwrap().to_update(applied.cid);
    second.services.insert(
        PDS_SERVICE_ID.into(),
        Service::atproto_pds("https://other.test"),
    );
    let second = Operation::Plc(second).sign(&acct.recovery);
    let applied = log.apply(second, at(2)).unwrap();
    assert_eq!(head_cid(&log), applied.cid);
    let doc = log.document().unwrap();
    assert_eq!(doc.handle(), Some(handle("alice2.test")));
    assert_eq!(doc.pds_endpoint(), Some("https://other.test"));
    assert_eq!(log.entries().len(), 3);
    assert_eq!(log.active().count(), 3);
    assert!(log.entries().iter().all(|e| !e.nullified && e.did == did));
    assert_eq!(
        log.entries()
            .iter()
            .map(|e| e.created_at)
            .collect::<Vec<_>>(),
        vec![t0(), at(1), at(2)]
    );
    // The log replays as an audit log.
    let replayed = PlcLog::from_audit_log(log.entries()).unwrap();
    assert_eq!(replayed.entries(), log.entries());
}

#[test]
fn genesis_rules() {
    let acct = account();
    let genesis = acct.genesis();
    let mut log = acct.log();
    // A second genesis for an existing DID.
    assert_eq!(
        log.apply(genesis.clone(), at(1)),
        Err(PlcError::AlreadyExists)
    );
    // A genesis offered for another DID.
    let other = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    assert_eq!(
        PlcLog::new(other).apply(genesis.clone(), t0()),
        Err(PlcError::GenesisDidMismatch {
            expected: "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".into(),
            derived: genesis.did().unwrap().to_string(),
        })
    );
    // A genesis signed by a key it does not list.
    let by_signing_key = genesis.operation.clone().sign(&acct.signing);
    assert!(matches!(
        PlcLog::create(by_signing_key, t0()),
        Err(PlcError::InvalidSignature { keys: 2, .. })
    ));
    // The first operation must be a genesis.
    let mut empty = PlcLog::new(log.did().clone());
    let update = rename(&log, head_cid(&log), "b.test").sign(&acct.pds);
    assert_eq!(empty.apply(update, t0()), Err(PlcError::FirstNotGenesis));
    let tombstone = Operation::Tombstone(Tombstone {
        prev: head_cid(&log),
    })
    .sign(&acct.pds);
    assert_eq!(empty.apply(tombstone, t0()), Err(PlcError::FirstNotGenesis));
    assert!(empty.entries().is_empty());
    assert_eq!(empty.document(), None);
    assert_eq!(log.entries().len(), 1);
}

#[test]
fn only_rotation_keys_in_force_at_prev_may_sign() {
    let acct = account();
    let mut log = acct.log();
    let stranger = key(9);
    let update = rename(&log, head_cid(&log), "b.test");
    // Neither a stranger nor the atproto signing key may sign.
    for wrong in [&stranger, &acct.signing] {
        assert!(matches!(
            log.apply(update.clone().sign(wrong), at(1)),
            Err(PlcError::InvalidSignature {
                keys: 2,
                source: CryptoError::InvalidSignature
            })
        ));
    }
    // Rotate the PDS key out, replacing it with a new one.
    let new_pds = key(4);
    let mut rotate = log.document().unwrap().to_update(head_cid(&log));
    rotate.rotation_keys = vec![
        acct.recovery.public_key().to_did_key(),
        new_pds.public_key().to_did_key(),
    ];
    let rotate = Operation::Plc(rotate).sign(&acct.pds);
    log.apply(rotate, at(1)).unwrap();
    // The old PDS key is no longer in force after the rotation.
    let next = rename(&log, head_cid(&log), "c.test");
    assert!(matches!(
        log.apply(next.clone().sign(&acct.pds), at(2)),
        Err(PlcError::InvalidSignature { .. })
    ));
    log.apply(next.sign(&new_pds), at(2)).unwrap();
    assert_eq!(log.document().unwrap().handle(), Some(handle("c.test")));
}

#[test]
fn prev_must_be_an_operation_of_this_did() {
    let acct = account();
    let mut log = acct.log();
    // Another account's genesis CID.
    let other = Account {
        recovery: key(5),
        pds: key(6),
        signing: key(7),
    };
    let foreign = other.genesis().cid();
    assert_eq!(
        log.apply(rename(&log, foreign, "b.test").sign(&acct.pds), at(1)),
        Err(PlcError::UnknownPrev(foreign.to_string()))
    );
    let made_up = cid_for(DAG_CBOR, b"\xa0");
    let tombstone = Operation::Tombstone(Tombstone { prev: made_up }).sign(&acct.pds);
    assert_eq!(
        log.apply(tombstone, at(1)),
        Err(PlcError::UnknownPrev(made_up.to_string()))
    );
}

#[test]
fn each_operation_must_be_later_than_the_latest() {
    let acct = account();
    let mut log = acct.log();
    let update = rename(&log, head_cid(&log), "b.test").sign(&acct.pds);
    // The directory keeps times to the millisecond.
    for when in [
        t0(),
        t0() - TimeDelta::seconds(1),
        t0() + TimeDelta::microseconds(999),
    ] {
        assert!(matches!(
            log.apply(update.clone(), when),
            Err(PlcError::NotAfterLatest { .. })
        ));
    }
    log.apply(update, t0() + TimeDelta::milliseconds(1))
        .unwrap();
}

/// genesis (t0) <- op1 (1 h, PDS key) <- op2 (2 h, PDS key).
fn log_with_two_updates(acct: &Account) -> (PlcLog, Cid, Cid, Cid) {
    let mut log = acct.log();
    let genesis = head_cid(&log);
    let op1 = log
        .apply(rename(&log, genesis, "op1.test").sign(&acct.pds), at(60))
        .unwrap()
        .cid;
    let op2 = log
        .apply(rename(&log, op1, "op2.test").sign(&acct.pds), at(120))
        .unwrap()
        .cid;
    (log, genesis, op1, op2)
}

#[test]
fn recovery_within_the_window_nullifies_later_operations() {
    let acct = account();
    let (mut log, genesis, op1, op2) = log_with_two_updates(&acct);
    // 50 hours after op1, the recovery key rewrites history from genesis.
    let recovery = rename(&log, genesis, "recovered.test").sign(&acct.recovery);
    let applied = log.apply(recovery.clone(), at(60 + 50 * 60)).unwrap();
    assert_eq!(applied.cid, recovery.cid());
    assert_eq!(applied.nullified, vec![op1, op2]);
    let flags: Vec<bool> = log.entries().iter().map(|e| e.nullified).collect();
    assert_eq!(flags, vec![false, true, true, false]);
    assert_eq!(
        log.active().map(|e| e.cid).collect::<Vec<_>>(),
        vec![genesis, applied.cid]
    );
    assert_eq!(head_cid(&log), applied.cid);
    assert_eq!(
        log.document().unwrap().handle(),
        Some(handle("recovered.test"))
    );
    // Nothing may build on a nullified operation.
    let on_nullified = rename(&log, op2, "x.test").sign(&acct.recovery);
    assert_eq!(
        log.apply(on_nullified, at(60 * 60)),
        Err(PlcError::PrevNullified(op2.to_string()))
    );
    // The audit log replays with the same flags.
    let replayed = PlcLog::from_audit_log(log.entries()).unwrap();
    assert_eq!(replayed.entries(), log.entries());
}

#[test]
fn recovery_from_the_middle_of_the_chain() {
    let acct = account();
    let (mut log, _, op1, op2) = log_with_two_updates(&acct);
    let recovery = rename(&log, op1, "r.test").sign(&acct.recovery);
    let applied = log.apply(recovery, at(180)).unwrap();
    assert_eq!(applied.nullified, vec![op2]);
    let flags: Vec<bool> = log.entries().iter().map(|e| e.nullified).collect();
    assert_eq!(flags, vec![false, false, true, false]);
}

#[test]
fn recovery_after_the_window_is_rejected() {
    let acct = account();
    let (log, genesis, _, _) = log_with_two_updates(&acct);
    let recovery = rename(&log, genesis, "late.test").sign(&acct.recovery);
    // op1, the first to be nullified, is at 1 h: the window ends at 73 h.
    let late = at(60) + RECOVERY_WINDOW + TimeDelta::milliseconds(1);
    let mut closed = log.clone();
    assert_eq!(
        closed.apply(recovery.clone(), late),
        Err(PlcError::RecoveryWindowClosed {
            elapsed_secs: 72 * 3600
        })
    );
    assert_eq!(closed.entries(), log.entries());
    // Exactly 72 hours is still inside the window (as the directory and
    // the official vector log_nullification_at_exactly_72h have it).
    let mut exact = log.clone();
    exact.apply(recovery, at(60) + RECOVERY_WINDOW).unwrap();
    assert_eq!(exact.active().count(), 2);
}

#[test]
fn recovery_needs_higher_authority_than_the_nullified_signer() {
    let acct = account();
    let (log, genesis, _, _) = log_with_two_updates(&acct);
    // op1 was signed by rotationKeys[1]: the same key cannot fork.
    let mut fork = log.clone();
    assert_eq!(
        fork.apply(rename(&log, genesis, "f.test").sign(&acct.pds), at(180)),
        Err(PlcError::InsufficientAuthority {
            signer: 1,
            disputed: 1
        })
    );
    // A key not in force at the fork point is no authority at all.
    assert!(matches!(
        fork.apply(rename(&log, genesis, "f.test").sign(&key(9)), at(180)),
        Err(PlcError::InvalidSignature { .. })
    ));
    assert_eq!(fork.entries(), log.entries());

    // When the recovery key signed the update, nothing can override it.
    let mut log = acct.log();
    let genesis = head_cid(&log);
    log.apply(rename(&log, genesis, "u.test").sign(&acct.recovery), at(1))
        .unwrap();
    for (signer, by) in [(1, &acct.pds), (0, &acct.recovery)] {
        assert_eq!(
            log.apply(rename(&log, genesis, "f.test").sign(by), at(2)),
            Err(PlcError::InsufficientAuthority {
                signer,
                disputed: 0
            })
        );
    }
}

#[test]
fn each_fork_needs_even_higher_authority() {
    let (a, b, c) = (key(11), key(12), key(13));
    let genesis = Operation::Plc(PlcOperation::atproto(
        &[a.public_key(), b.public_key(), c.public_key()],
        &key(14).public_key(),
        &handle("alice.test"),
        "https://pds.test",
        None,
    ))
    .sign(&c);
    let mut log = PlcLog::create(genesis, t0()).unwrap();
    let g = head_cid(&log);
    log.apply(rename(&log, g, "by-c.test").sign(&c), at(1))
        .unwrap();
    log.apply(rename(&log, g, "by-b.test").sign(&b), at(2))
        .unwrap();
    // b's fork now stands: another fork by b is refused, by a accepted.
    assert_eq!(
        log.apply(rename(&log, g, "by-b2.test").sign(&b), at(3)),
        Err(PlcError::InsufficientAuthority {
            signer: 1,
            disputed: 1
        })
    );
    let applied = log
        .apply(rename(&log, g, "by-a.test").sign(&a), at(4))
        .unwrap();
    assert_eq!(applied.nullified.len(), 1);
    let flags: Vec<bool> = log.entries().iter().map(|e| e.nullified).collect();
    assert_eq!(flags, vec![false, true, true, false]);
}

#[test]
fn nothing_may_follow_a_tombstone() {
    let acct = account();
    let mut log = acct.log();
    let genesis = head_cid(&log);
    let op1 = log
        .apply(rename(&log, genesis, "op1.test").sign(&acct.pds), at(1))
        .unwrap()
        .cid;
    let tombstone = log
        .apply(
            Operation::Tombstone(Tombstone { prev: op1 }).sign(&acct.pds),
            at(2),
        )
        .unwrap()
        .cid;
    assert!(log.is_tombstoned());
    assert_eq!(log.document(), None);

    // An update or tombstone on the tombstone: refused, whoever signs.
    let mut update = rename_from(&log, op1, "x.test");
    if let Operation::Plc(update) = &mut update {
        update.prev = Some(tombstone);
    }
    let after = [
        update.clone().sign(&acct.pds),
        update.sign(&acct.recovery),
        Operation::Tombstone(Tombstone { prev: tombstone }).sign(&acct.pds),
        Operation::Tombstone(Tombstone { prev: tombstone }).sign(&acct.recovery),
    ];
    for op in after {
        assert_eq!(
            log.apply(op, at(3)),
            Err(PlcError::PrevTombstone(tombstone.to_string()))
        );
    }
    // A fork around the tombstone by the key that signed it: refused.
    assert_eq!(
        log.apply(rename_from(&log, op1, "y.test").sign(&acct.pds), at(3)),
        Err(PlcError::InsufficientAuthority {
            signer: 1,
            disputed: 1
        })
    );
    // After the recovery window, even the recovery key is too late.
    let mut late = log.clone();
    assert!(matches!(
        late.apply(
            rename_from(&log, op1, "y.test").sign(&acct.recovery),
            at(2) + RECOVERY_WINDOW + TimeDelta::seconds(1)
        ),
        Err(PlcError::RecoveryWindowClosed { .. })
    ));
    // Within it, the recovery key may undo the tombstone (the spec: the
    // recovery window applies to tombstones).
    let applied = log
        .apply(
            rename_from(&log, op1, "back.test").sign(&acct.recovery),
            at(3),
        )
        .unwrap();
    assert_eq!(applied.nullified, vec![tombstone]);
    assert!(!log.is_tombstoned());
    assert_eq!(log.document().unwrap().handle(), Some(handle("back.test")));
}

/// An update with a new handle after `prev`, built from the state at
/// `prev` (which need not be the log's current state).
fn rename_from(log: &PlcLog, prev: Cid, new_handle: &str) -> Operation {
    let entry = log.entries().iter().find(|e| e.cid == prev).unwrap();
    let doc = DocumentData::from_operation(log.did().clone(), &entry.operation.operation)
        .unwrap()
        .unwrap();
    let mut op = doc.to_update(prev);
    op.also_known_as = vec![format!("at://{new_handle}")];
    Operation::Plc(op)
}

/// A change to an operation's fields.
type Change = Box<dyn Fn(&mut PlcOperation)>;

/// Whether a genesis changed by `change` is accepted as a new operation.
fn genesis_with(change: &dyn Fn(&mut PlcOperation)) -> Result<(), PlcError> {
    let acct = account();
    let Operation::Plc(mut op) = acct.genesis().operation else {
        unreachable!("the genesis is a plc_operation")
    };
    change(&mut op);
    PlcLog::create(Operation::Plc(op).sign(&acct.pds), t0()).map(|_| ())
}

fn did_key(n: u8) -> String {
    key(n).public_key().to_did_key()
}

fn pds_service(op: &mut PlcOperation) -> &mut Service {
    op.services.get_mut(PDS_SERVICE_ID).unwrap()
}

#[test]
fn new_operations_need_one_to_five_distinct_valid_rotation_keys() {
    assert_eq!(genesis_with(&|_| {}), Ok(()));
    let cases: Vec<(Change, PlcError)> = vec![
        (
            Box::new(|op| op.rotation_keys.clear()),
            PlcError::RotationKeyCount(0),
        ),
        (
            Box::new(|op| op.rotation_keys.extend((20..24).map(did_key))),
            PlcError::RotationKeyCount(6),
        ),
        (
            Box::new(|op| op.rotation_keys.push(op.rotation_keys[1].clone())),
            PlcError::DuplicateRotationKey(account().pds.public_key().to_did_key()),
        ),
    ];
    for (change, expected) in cases {
        assert_eq!(genesis_with(&*change), Err(expected));
    }
    let five = |op: &mut PlcOperation| op.rotation_keys.extend((20..23).map(did_key));
    assert_eq!(genesis_with(&five), Ok(()));
    let bad: [(Change, &str); 2] = [
        (
            Box::new(|op| op.rotation_keys[0] = "did:key:zNotAKey".into()),
            "rotationKeys[0]",
        ),
        (
            Box::new(|op| {
                op.verification_methods
                    .insert("atproto".into(), "did:web:x.test".into());
            }),
            "verificationMethods.atproto",
        ),
    ];
    for (change, field) in bad {
        assert!(
            matches!(genesis_with(&*change), Err(PlcError::InvalidDidKey { field: f, .. }) if f == field),
            "{field}"
        );
    }
}

#[test]
fn new_operations_have_bounded_entries_and_ids() {
    let cases: Vec<(Change, PlcError)> = vec![
        (
            Box::new(|op| {
                for i in 0..10 {
                    op.verification_methods.insert(format!("m{i}"), did_key(30));
                }
            }),
            PlcError::TooManyEntries {
                field: "verificationMethods",
                count: 11,
            },
        ),
        (
            Box::new(|op| {
                op.verification_methods
                    .insert("#atproto".into(), did_key(30));
            }),
            PlcError::BadId {
                field: "verificationMethods",
                id: "#atproto".into(),
            },
        ),
        (
            Box::new(|op| {
                op.services
                    .insert(String::new(), Service::atproto_pds("https://x.test"));
            }),
            PlcError::BadId {
                field: "services",
                id: String::new(),
            },
        ),
        (
            Box::new(|op| {
                op.services
                    .insert("s".repeat(33), Service::atproto_pds("https://x.test"));
            }),
            PlcError::TooLong {
                field: "services id".into(),
                len: 33,
                max: MAX_ID_LEN,
            },
        ),
        (
            Box::new(|op| op.also_known_as.push(op.also_known_as[0].clone())),
            PlcError::DuplicateAlsoKnownAs("at://alice.test".into()),
        ),
        (
            Box::new(|op| {
                op.also_known_as
                    .extend((0..10).map(|i| format!("at://a{i}.test")));
            }),
            PlcError::TooManyEntries {
                field: "alsoKnownAs",
                count: 11,
            },
        ),
    ];
    for (change, expected) in cases {
        assert_eq!(genesis_with(&*change), Err(expected));
    }
}

#[test]
fn new_operations_have_bounded_well_formed_strings() {
    let cases: Vec<(Change, PlcError)> = vec![
        (
            Box::new(|op| op.also_known_as[0] = format!("at://{}", "a".repeat(254))),
            PlcError::TooLong {
                field: "alsoKnownAs[0]".into(),
                len: 259,
                max: MAX_ALSO_KNOWN_AS_LEN,
            },
        ),
        (
            Box::new(|op| pds_service(op).service_type.clear()),
            PlcError::InvalidValue {
                field: "services.atproto_pds.type".into(),
                reason: "must not be empty".into(),
            },
        ),
        (
            Box::new(|op| pds_service(op).endpoint = format!("https://{}", "a".repeat(505))),
            PlcError::TooLong {
                field: "services.atproto_pds.endpoint".into(),
                len: 513,
                max: MAX_SERVICE_ENDPOINT_LEN,
            },
        ),
    ];
    for (change, expected) in cases {
        assert_eq!(genesis_with(&*change), Err(expected));
    }
    let not_uris: [(Change, &str); 2] = [
        (
            Box::new(|op| op.also_known_as[0] = "alice.test".into()),
            "alsoKnownAs[0]",
        ),
        (
            Box::new(|op| pds_service(op).endpoint = "pds dot test".into()),
            "services.atproto_pds.endpoint",
        ),
    ];
    for (change, field) in not_uris {
        assert!(
            matches!(genesis_with(&*change), Err(PlcError::InvalidValue { field: f, .. }) if f == field),
            "{field}"
        );
    }
}

#[test]
fn new_operations_are_bounded_in_size_and_never_legacy() {
    let huge = |op: &mut PlcOperation| {
        op.also_known_as = (0..10)
            .map(|i| format!("at://{i}{}", "a".repeat(240)))
            .collect();
        for i in 0..9 {
            op.services.insert(
                format!("s{i}"),
                Service::atproto_pds("https://a.test/".repeat(20)),
            );
        }
    };
    assert!(matches!(
        genesis_with(&huge),
        Err(PlcError::TooLarge(n)) if n > MAX_OPERATION_BYTES
    ));
    // A legacy `create` genesis is only ever replayed, never accepted anew.
    let legacy = Operation::LegacyCreate(LegacyCreate {
        signing_key: key(45).public_key().to_did_key(),
        recovery_key: key(46).public_key().to_did_key(),
        handle: "old.test".into(),
        service: "https://pds.test".into(),
    })
    .sign(&key(46));
    assert_eq!(
        PlcLog::create(legacy, t0()).map(|_| ()),
        Err(PlcError::LegacyCreate)
    );
}

use crate::interop::plc_vectors as vectors;

static VECTOR_CACHE: std::sync::OnceLock<Option<Vec<(String, String)>>> =
    std::sync::OnceLock::new();

#[test]
fn official_audit_log_vectors() {
    let Some(vectors) = vectors() else { return };
    let mut valid = 0;
    let mut invalid = 0;
    for (name, text) in &vectors {
        let (name, text) = (name.as_str(), text.as_str());
        let result = PlcLog::from_audit_log_json(text);
        if name.starts_with("log_invalid_") {
            let err = result.expect_err(name);
            let ok = match name {
                "log_invalid_nullification_reused_key.json" => {
                    matches!(err, PlcError::InsufficientAuthority { .. })
                }
                "log_invalid_nullification_too_slow.json" => {
                    matches!(err, PlcError::RecoveryWindowClosed { .. })
                }
                "log_invalid_sig_b64_newline.json"
                | "log_invalid_sig_b64_padding_bits.json"
                | "log_invalid_sig_b64_padding_chars.json" => {
                    matches!(err, PlcError::SignatureEncoding(_))
                }
                "log_invalid_sig_der.json" => matches!(err, PlcError::InvalidSignature { .. }),
                "log_invalid_sig_k256_high_s.json" | "log_invalid_sig_p256_high_s.json" => {
                    matches!(
                        err,
                        PlcError::InvalidSignature {
                            source: CryptoError::HighSSignature,
                            ..
                        }
                    )
                }
                "log_invalid_update_nullified.json" => matches!(err, PlcError::PrevNullified(_)),
                "log_invalid_update_tombstoned.json" => matches!(err, PlcError::PrevTombstone(_)),
                _ => false,
            };
            assert!(ok, "{name}: rejected for the wrong reason: {err}");
            invalid += 1;
        } else {
            let log = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let stated: Vec<AuditEntry> = serde_json::from_str(text).unwrap();
            assert_eq!(log.entries(), stated.as_slice(), "{name}");
            // The DID derivation, checked on its own.
            let genesis = &stated[0];
            assert_eq!(genesis.operation.did().unwrap(), genesis.did, "{name}");
            // Serialising the entries gives back the same JSON values.
            let original: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                serde_json::to_value(log.entries()).unwrap(),
                original,
                "{name}"
            );
            valid += 1;
        }
    }
    println!("did:plc audit-log vectors: {valid} valid and {invalid} invalid logs passed");
    assert_eq!((valid, invalid), (10, 10));
}

#[test]
fn official_vector_states() {
    let Some(vectors) = vectors() else { return };
    // The legacy genesis reads as the plc_operation it stands for.
    let legacy = &vectors
        .iter()
        .find(|(n, _)| n == "log_legacy_dholms.json")
        .unwrap()
        .1;
    let log = PlcLog::from_audit_log_json(legacy).unwrap();
    let genesis = &log.entries()[0];
    let doc = DocumentData::from_operation(log.did().clone(), &genesis.operation.operation)
        .unwrap()
        .unwrap();
    assert_eq!(doc.handle(), Some(handle("dan.bsky.social")));
    assert_eq!(doc.pds_endpoint(), Some("https://bsky.social"));
    assert_eq!(
        doc.rotation_keys
            .iter()
            .map(PublicKey::to_did_key)
            .collect::<Vec<_>>(),
        vec![
            "did:key:zQ3shhCGUqDKjStzuDxPkTxN6ujddP4RkEKJJouJGRRkaLGbg",
            "did:key:zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ",
        ]
    );
    assert_eq!(
        doc.atproto_signing_key().map(|k| k.to_did_key()).as_deref(),
        Some("did:key:zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ")
    );
    // The current state of the log is its last operation's.
    let last = log.head().unwrap();
    let expected =
        DocumentData::from_operation(log.did().clone(), &last.operation.operation).unwrap();
    assert_eq!(log.document(), expected);

    let named = |n: &str| {
        vectors
            .iter()
            .find(|(name, _)| name == n)
            .unwrap()
            .1
            .as_str()
    };
    let tombstoned = PlcLog::from_audit_log_json(named("log_tombstone.json")).unwrap();
    assert!(tombstoned.is_tombstoned());
    assert_eq!(tombstoned.document(), None);
    let nullified_tombstone =
        PlcLog::from_audit_log_json(named("log_nullified_tombstone.json")).unwrap();
    assert!(!nullified_tombstone.is_tombstoned());
    assert!(nullified_tombstone.document().is_some());
    // The scenario of log_nullification_nontrivial: only op0, op1, op7 stand.
    let nontrivial =
        PlcLog::from_audit_log_json(named("log_nullification_nontrivial.json")).unwrap();
    let handles: Vec<String> = nontrivial
        .active()
        .map(|e| match &e.operation.operation {
            Operation::Plc(op) => op.also_known_as[0].clone(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(handles, vec!["at://op0", "at://op1", "at://op7"]);
}

#[test]
fn audit_logs_that_misstate_the_replay_are_rejected() {
    let acct = account();
    let (mut log, genesis, _, _) = log_with_two_updates(&acct);
    log.apply(
        rename(&log, genesis, "r.test").sign(&acct.recovery),
        at(200),
    )
    .unwrap();
    let entries = log.entries().to_vec();
    assert!(PlcLog::from_audit_log(&entries).is_ok());
    assert_eq!(
        PlcLog::from_audit_log(&[]).map(|_| ()),
        Err(PlcError::EmptyAuditLog)
    );

    let mut flag = entries.clone();
    flag[1].nullified = false;
    assert_eq!(
        PlcLog::from_audit_log(&flag).map(|_| ()),
        Err(PlcError::AuditNullifiedMismatch {
            index: 1,
            stated: false,
            computed: true
        })
    );
    let mut cid = entries.clone();
    cid[2].cid = cid[1].cid;
    assert!(matches!(
        PlcLog::from_audit_log(&cid),
        Err(PlcError::AuditCidMismatch { index: 2, .. })
    ));
    let mut did = entries.clone();
    did[3].did = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    assert!(matches!(
        PlcLog::from_audit_log(&did),
        Err(PlcError::AuditDidMismatch { index: 3, .. })
    ));
    // Out of order: the recovery before what it nullifies.
    let mut order = entries.clone();
    order.swap(2, 3);
    assert!(PlcLog::from_audit_log(&order).is_err());
    // A JSON round trip of the audit log.
    let json = serde_json::to_string(log.entries()).unwrap();
    let again = PlcLog::from_audit_log_json(&json).unwrap();
    assert_eq!(again.entries(), log.entries());
    assert!(
        json.contains(r#""createdAt":"2025-01-01T00:00:00.000Z""#),
        "{json}"
    );
    // Unknown fields and bad values in entries are rejected.
    for bad in [
        json.replacen(r#""nullified":false"#, r#""nullified":false,"extra":1"#, 1),
        json.replacen("2025-01-01T00:00:00.000Z", "yesterday", 1),
        json.replacen(&genesis.to_string(), "bafyreinotacid", 1),
    ] {
        assert!(PlcLog::from_audit_log_json(&bad).is_err(), "{bad}");
    }
}

#[test]
fn did_document_rendering() {
    let acct = account();
    let log = acct.log();
    let did = log.did().to_string();
    let doc = log.document().unwrap().to_did_document();
    assert_eq!(
        doc,
        serde_json::json!({
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/multikey/v1",
                "https://w3id.org/security/suites/secp256k1-2019/v1",
            ],
            "id": did,
            "alsoKnownAs": ["at://alice.test"],
            "verificationMethod": [{
                "id": format!("{did}#atproto"),
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": acct.signing.public_key().to_multikey(),
            }],
            "service": [{
                "id": "#atproto_pds",
                "type": "AtprotoPersonalDataServer",
                "serviceEndpoint": "https://pds.test",
            }],
        })
    );
}

#[test]
fn handles_are_read_from_at_uris() {
    let acct = account();
    let mut doc = acct.log().document().unwrap();
    doc.also_known_as = vec![
        "https://alice.example".into(),
        "at://Alice.Test".into(),
        "at://second.test".into(),
        "at://not a handle".into(),
    ];
    assert_eq!(doc.handle(), Some(handle("alice.test")));
    assert_eq!(
        doc.handles(),
        vec![handle("alice.test"), handle("second.test")]
    );
    doc.also_known_as.swap(1, 3);
    assert_eq!(doc.handle(), None);
    doc.services.get_mut(PDS_SERVICE_ID).unwrap().service_type = "Other".into();
    assert_eq!(doc.pds_endpoint(), None);
    doc.verification_methods.clear();
    assert_eq!(doc.atproto_signing_key(), None);
}

#[test]
fn sign_operation_is_the_method() {
    let acct = account();
    let op = acct.genesis().operation;
    assert_eq!(sign_operation(op.clone(), &acct.pds), op.sign(&acct.pds));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_audit_log_json_never_panics(input in "\\PC{0,300}") {
        let _ = PlcLog::from_audit_log_json(&input);
        let _ = serde_json::from_str::<Vec<AuditEntry>>(&input);
    }

    #[test]
    fn mangled_vectors_never_panic(
        file in any::<prop::sample::Index>(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let Some(vectors) = VECTOR_CACHE.get_or_init(vectors).as_ref() else { return Ok(()) };
        let mut text = vectors[file.index(vectors.len())].1.as_bytes().to_vec();
        let i = position.index(text.len());
        text[i] = byte;
        let _ = PlcLog::from_audit_log_json(&String::from_utf8_lossy(&text));
    }

    #[test]
    fn random_timings_keep_the_log_consistent(steps in proptest::collection::vec((0u8..3, 0usize..4, 1i64..6000), 1..12)) {
        // Random updates, forks and signers at random times: whatever is
        // accepted, the log replays as an audit log and its head is active.
        let keys = [key(41), key(42), key(43)];
        let genesis = Operation::Plc(PlcOperation::atproto(
            &keys.iter().map(SigningKey::public_key).collect::<Vec<_>>(),
            &key(44).public_key(),
            &handle("p.test"),
            "https://pds.test",
            None,
        ))
        .sign(&keys[2]);
        let mut log = PlcLog::create(genesis, t0()).unwrap();
        let mut now = t0();
        for (signer, back, minutes) in steps {
            now += TimeDelta::minutes(minutes);
            let active: Vec<Cid> = log.active().map(|e| e.cid).collect();
            let prev = active[active.len() - 1 - back.min(active.len() - 1)];
            if log.is_tombstoned() && prev == head_cid(&log) {
                continue;
            }
            let op = if minutes % 7 == 0 {
                Operation::Tombstone(Tombstone { prev })
            } else {
                rename_from(&log, prev, &format!("h{minutes}.test"))
            };
            let _ = log.apply(op.sign(&keys[usize::from(signer)]), now);
            prop_assert!(!log.head().unwrap().nullified);
        }
        let replayed = PlcLog::from_audit_log(log.entries()).unwrap();
        prop_assert_eq!(replayed.entries(), log.entries());
    }
}
