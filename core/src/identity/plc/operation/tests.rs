use super::*;
use crate::crypto::Curve;
use proptest::prelude::*;
use serde_json::json;

/// A fixed key: deterministic tests, different keys for different `n`.
fn key(curve: Curve, n: u8) -> SigningKey {
    SigningKey::from_bytes(curve, &[n; 32]).unwrap()
}

fn handle(h: &str) -> Handle {
    Handle::parse(h).unwrap()
}

/// An unsigned genesis for `alice.test` on `https://pds.test`.
fn genesis(rotation: &[&SigningKey], signing: &SigningKey) -> Operation {
    let keys: Vec<PublicKey> = rotation.iter().map(|k| k.public_key()).collect();
    Operation::Plc(PlcOperation::atproto(
        &keys,
        &signing.public_key(),
        &handle("alice.test"),
        "https://pds.test",
        None,
    ))
}

/// A change to an operation's fields.
type Change<'a> = Box<dyn Fn(&mut PlcOperation) + 'a>;

fn a_cid() -> Cid {
    cid_for(DAG_CBOR, b"\xa0")
}

fn plc(op: &mut Operation) -> &mut PlcOperation {
    match op {
        Operation::Plc(op) => op,
        _ => panic!("not a plc_operation"),
    }
}

/// A legacy `create` genesis of our own (signed by its signing key).
fn legacy_genesis() -> SignedOperation {
    let signing = key(Curve::K256, 7);
    Operation::LegacyCreate(LegacyCreate {
        signing_key: signing.public_key().to_did_key(),
        recovery_key: key(Curve::K256, 8).public_key().to_did_key(),
        handle: "old.test".into(),
        service: "https://pds.test".into(),
    })
    .sign(&signing)
}

#[test]
fn official_genesis_vectors_give_their_did_and_cid() {
    let Some(vectors) = crate::interop::plc_vectors() else {
        return;
    };
    let genesis = |file: &str| {
        let (_, text) = vectors.iter().find(|(n, _)| n == file).unwrap();
        let log: serde_json::Value = serde_json::from_str(text).unwrap();
        log[0]["operation"].to_string()
    };
    let (bskyapp, dholms) = (
        genesis("log_bskyapp.json"),
        genesis("log_legacy_dholms.json"),
    );
    let cases = [
        (
            bskyapp.as_str(),
            "did:plc:z72i7hdynmk6r22z27h6tvur",
            "bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm",
            1,
        ),
        (
            dholms.as_str(),
            "did:plc:yk4dd2qkboz2yv6tpubpc6co",
            "bafyreigcxay6ucqlwowfpu35alyxqtv3c4vsj7gmdtmnidsnqs6nblyarq",
            // Signed by the signing key, the second of [recoveryKey, signingKey].
            1,
        ),
    ];
    for (json, did, cid, signer) in cases {
        let op = SignedOperation::from_json(json).unwrap();
        assert_eq!(op.did().unwrap().as_str(), did);
        assert_eq!(op.cid().to_string(), cid);
        let keys = op.operation.rotation_keys().unwrap();
        assert_eq!(verify_signature(&op, &keys), Ok(signer));
        // Re-encoding gives the same bytes: JSON -> op -> JSON -> op.
        let again = SignedOperation::from_json(&op.to_json()).unwrap();
        assert_eq!(again, op);
        assert_eq!(SignedOperation::from_cbor(&op.to_cbor()).unwrap(), op);
    }
}

#[test]
fn json_round_trip_in_spec_field_order() {
    let rotation = key(Curve::K256, 1);
    let signing = key(Curve::K256, 2);
    let op = genesis(&[&rotation], &signing).sign(&rotation);
    let json = op.to_json();
    assert!(
        json.starts_with(r#"{"type":"plc_operation","rotationKeys":["did:key:zQ3sh"#),
        "{json}"
    );
    assert!(
        json.contains(r#""services":{"atproto_pds":{"type":"AtprotoPersonalDataServer","endpoint":"https://pds.test"}},"prev":null,"sig":""#),
        "{json}"
    );
    assert!(
        json.contains(r#""alsoKnownAs":["at://alice.test"]"#),
        "{json}"
    );
    assert_eq!(SignedOperation::from_json(&json).unwrap(), op);
    let value: SignedOperation = serde_json::from_str(&json).unwrap();
    assert_eq!(value, op);
    assert_eq!(SignedOperation::from_cbor(&op.to_cbor()).unwrap(), op);

    // The unsigned form round-trips too, without `sig`.
    let unsigned = serde_json::to_string(&op.operation).unwrap();
    assert!(!unsigned.contains("sig"), "{unsigned}");
    assert_eq!(Operation::from_json(&unsigned).unwrap(), op.operation);
    assert!(matches!(
        Operation::from_json(&json),
        Err(PlcError::UnexpectedField { field, .. }) if field == "sig"
    ));

    let tombstone = Operation::Tombstone(Tombstone { prev: a_cid() }).sign(&rotation);
    let json = tombstone.to_json();
    assert!(
        json.starts_with(&format!(
            r#"{{"type":"plc_tombstone","prev":"{}","sig":""#,
            a_cid()
        )),
        "{json}"
    );
    assert_eq!(SignedOperation::from_json(&json).unwrap(), tombstone);
    assert_eq!(
        SignedOperation::from_cbor(&tombstone.to_cbor()).unwrap(),
        tombstone
    );

    let legacy = legacy_genesis();
    let json = legacy.to_json();
    assert!(
        json.starts_with(r#"{"type":"create","signingKey":"#),
        "{json}"
    );
    assert!(json.contains(r#""prev":null,"sig":""#), "{json}");
    assert_eq!(SignedOperation::from_json(&json).unwrap(), legacy);
}

#[test]
fn genesis_signed_with_k256_gives_a_did_plc_and_verifies() {
    for curve in Curve::ALL {
        let rotation = key(curve, 3);
        let signing = key(Curve::K256, 4);
        let op = sign_operation(genesis(&[&rotation], &signing), &rotation);
        let did = op.did().unwrap();
        let id = did.as_str().strip_prefix("did:plc:").unwrap();
        assert_eq!(id.len(), 24, "{did}");
        assert!(
            id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')),
            "{did}"
        );
        assert_eq!(did.method(), "plc");
        assert_eq!(verify_signature(&op, &[rotation.public_key()]), Ok(0));
        // The DID is the hash of the signed operation: another signature
        // (another key) gives another DID.
        let other = key(curve, 5);
        let mut op2 = genesis(&[&rotation], &signing);
        plc(&mut op2)
            .rotation_keys
            .push(other.public_key().to_did_key());
        let by_rotation = op2.clone().sign(&rotation);
        let by_other = op2.sign(&other);
        assert_ne!(by_rotation.did().unwrap(), by_other.did().unwrap());
        assert_eq!(
            verify_signature(&by_other, &by_other.operation.rotation_keys().unwrap()),
            Ok(1)
        );
        // The CID is the dag-cbor sha2-256 CIDv1 of the same bytes.
        assert_eq!(op.cid(), cid_for(DAG_CBOR, &op.to_cbor()));
        assert!(op.cid().to_string().starts_with("bafyrei"));
    }
}

#[test]
fn the_signature_covers_the_encoding_without_sig() {
    let rotation = key(Curve::K256, 1);
    let op = genesis(&[&rotation], &key(Curve::K256, 2)).sign(&rotation);
    let Ipld::Map(unsigned) = data::decode_strict(&op.operation.signing_bytes()).unwrap() else {
        panic!("not a map");
    };
    assert!(!unsigned.contains_key("sig"));
    assert_eq!(unsigned.get("prev"), Some(&Ipld::Null));
    let Ipld::Map(signed) = data::decode_strict(&op.to_cbor()).unwrap() else {
        panic!("not a map");
    };
    assert_eq!(
        signed.get("sig"),
        Some(&Ipld::String(URL_SAFE_NO_PAD.encode(op.sig)))
    );
    rotation
        .public_key()
        .verify(&op.operation.signing_bytes(), &op.sig)
        .unwrap();
    // `prev` is a string, not a link.
    let update = Operation::Tombstone(Tombstone { prev: a_cid() });
    let Ipld::Map(map) = update.to_ipld() else {
        panic!("not a map");
    };
    assert_eq!(map.get("prev"), Some(&Ipld::String(a_cid().to_string())));
}

#[test]
fn tampering_with_any_field_breaks_verification() {
    let rotation = key(Curve::K256, 1);
    let signing = key(Curve::P256, 2);
    let stranger = key(Curve::K256, 9).public_key().to_did_key();
    let signed = genesis(&[&rotation], &signing).sign(&rotation);
    let keys = [rotation.public_key()];
    assert_eq!(verify_signature(&signed, &keys), Ok(0));

    let tampers: Vec<(&str, Change<'_>)> = vec![
        (
            "rotationKeys",
            Box::new(|op| op.rotation_keys.push(stranger.clone())),
        ),
        (
            "rotationKeys order",
            Box::new(|op| op.rotation_keys.insert(0, stranger.clone())),
        ),
        (
            "verificationMethods",
            Box::new(|op| {
                op.verification_methods
                    .insert("atproto".into(), stranger.clone());
            }),
        ),
        (
            "verificationMethods name",
            Box::new(|op| {
                let key = op.verification_methods.remove("atproto").unwrap();
                op.verification_methods.insert("atproto2".into(), key);
            }),
        ),
        (
            "alsoKnownAs",
            Box::new(|op| op.also_known_as[0] = "at://mallory.test".into()),
        ),
        (
            "alsoKnownAs extra",
            Box::new(|op| op.also_known_as.push("at://alice.test2".into())),
        ),
        (
            "services endpoint",
            Box::new(|op| {
                op.services.get_mut("atproto_pds").unwrap().endpoint = "https://evil.test".into();
            }),
        ),
        (
            "services type",
            Box::new(|op| {
                op.services.get_mut("atproto_pds").unwrap().service_type = "Other".into();
            }),
        ),
        (
            "services id",
            Box::new(|op| {
                let s = op.services.remove("atproto_pds").unwrap();
                op.services.insert("atproto_pds2".into(), s);
            }),
        ),
        ("prev", Box::new(|op| op.prev = Some(a_cid()))),
    ];
    for (what, tamper) in tampers {
        let mut op = signed.clone();
        tamper(plc(&mut op.operation));
        assert!(
            matches!(
                verify_signature(&op, &keys),
                Err(PlcError::InvalidSignature { keys: 1, .. })
            ),
            "tampered {what} still verifies"
        );
    }
}

#[test]
fn tampering_with_sig_type_tombstone_or_legacy_breaks_verification() {
    let rotation = key(Curve::K256, 1);
    let stranger = key(Curve::K256, 9).public_key().to_did_key();
    let signed = genesis(&[&rotation], &key(Curve::P256, 2)).sign(&rotation);
    let keys = [rotation.public_key()];
    // Changing the type: the same fields as a tombstone.
    let as_tombstone = SignedOperation {
        operation: Operation::Tombstone(Tombstone { prev: a_cid() }),
        sig: signed.sig,
    };
    assert!(verify_signature(&as_tombstone, &keys).is_err());
    // Every bit of the signature matters.
    for i in 0..SIGNATURE_LEN {
        let mut op = signed.clone();
        op.sig[i] ^= 0x10;
        assert!(verify_signature(&op, &keys).is_err(), "sig byte {i}");
    }
    // Tombstone and legacy fields too.
    let tombstone = Operation::Tombstone(Tombstone { prev: a_cid() }).sign(&rotation);
    let mut other = tombstone.clone();
    other.operation = Operation::Tombstone(Tombstone {
        prev: cid_for(DAG_CBOR, b"\xa1\x61a\x01"),
    });
    assert_eq!(verify_signature(&tombstone, &keys), Ok(0));
    assert!(verify_signature(&other, &keys).is_err());
    let legacy = legacy_genesis();
    let legacy_keys = legacy.operation.rotation_keys().unwrap();
    for field in 0..4 {
        let mut op = legacy.clone();
        let Operation::LegacyCreate(l) = &mut op.operation else {
            panic!("not legacy")
        };
        match field {
            0 => l.handle.push('x'),
            1 => l.service.push('x'),
            2 => l.signing_key = stranger.clone(),
            _ => l.recovery_key = stranger.clone(),
        }
        assert!(
            verify_signature(&op, &legacy_keys).is_err(),
            "legacy field {field}"
        );
    }
}

#[test]
fn a_key_that_did_not_sign_is_rejected() {
    let rotation = key(Curve::K256, 1);
    let op = genesis(&[&rotation], &key(Curve::K256, 2)).sign(&rotation);
    for wrong in [
        key(Curve::K256, 7),
        key(Curve::P256, 7),
        key(Curve::K256, 2),
    ] {
        assert_eq!(
            verify_signature(&op, &[wrong.public_key()]),
            Err(PlcError::InvalidSignature {
                keys: 1,
                source: CryptoError::InvalidSignature
            })
        );
    }
    assert!(matches!(
        verify_signature(&op, &[]),
        Err(PlcError::InvalidSignature { keys: 0, .. })
    ));
    // The first matching key wins: its index is the signer's authority.
    let keys = [
        key(Curve::P256, 8).public_key(),
        rotation.public_key(),
        rotation.public_key(),
    ];
    assert_eq!(verify_signature(&op, &keys), Ok(1));
}

#[test]
fn only_a_genesis_names_a_did() {
    let rotation = key(Curve::K256, 1);
    let tombstone = Operation::Tombstone(Tombstone { prev: a_cid() }).sign(&rotation);
    assert_eq!(tombstone.did(), Err(PlcError::NotGenesis));
    let mut update = genesis(&[&rotation], &rotation);
    plc(&mut update).prev = Some(a_cid());
    assert_eq!(update.sign(&rotation).did(), Err(PlcError::NotGenesis));
    assert!(!Operation::Tombstone(Tombstone { prev: a_cid() }).is_genesis());
}

/// A valid signed genesis as JSON, and variants of it with one field
/// changed or removed.
struct Fixture {
    op: SignedOperation,
    good: serde_json::Value,
    sig: String,
}

impl Fixture {
    fn new() -> Self {
        let rotation = key(Curve::K256, 1);
        let op = genesis(&[&rotation], &rotation).sign(&rotation);
        let good = serde_json::from_str(&op.to_json()).unwrap();
        let sig = op.sig_base64url();
        Self { op, good, sig }
    }

    fn with(&self, field: &str, value: impl Into<serde_json::Value>) -> String {
        let mut v = self.good.clone();
        v[field] = value.into();
        v.to_string()
    }

    fn without(&self, field: &str) -> String {
        let mut v = self.good.clone();
        v.as_object_mut().unwrap().remove(field);
        v.to_string()
    }
}

/// Asserts that every input is rejected, by `from_json` and by serde.
fn all_rejected(cases: Vec<(String, &str)>) {
    for (input, what) in cases {
        assert!(
            SignedOperation::from_json(&input).is_err(),
            "{what}: accepted {input}"
        );
        assert!(
            serde_json::from_str::<SignedOperation>(&input).is_err(),
            "{what}"
        );
    }
}

#[test]
fn strict_json_rejects_bad_sig_and_prev() {
    let f = Fixture::new();
    let sig = &f.sig;
    // The last character of a 64-byte base64url string carries 4 unused
    // bits, zero in a canonical encoding ('A', 'Q', 'g' or 'w'); 'B' sets one.
    let trailing_bits = format!("{}B", &sig[..sig.len() - 1]);
    let raw_cid = crate::data::cid_for(crate::data::RAW, b"x").to_string();
    let base58_cid = a_cid()
        .to_string_of_base(multibase::Base::Base58Btc)
        .unwrap();
    all_rejected(vec![
        (f.without("sig"), "no sig"),
        (f.without("prev"), "no prev"),
        (f.with("sig", format!("{sig}==")), "padded sig"),
        (f.with("sig", format!("{sig}\n")), "sig with a newline"),
        (
            f.with("sig", sig.replace('_', "/").replace('-', "+")),
            "standard alphabet",
        ),
        (f.with("sig", trailing_bits), "sig with trailing bits"),
        (f.with("sig", &sig[..84]), "63-byte sig"),
        (f.with("sig", format!("{sig}AA")), "66-byte sig"),
        (f.with("sig", serde_json::Value::Null), "null sig"),
        (
            f.with("prev", a_cid().to_string().to_uppercase()),
            "uppercase prev",
        ),
        (f.with("prev", base58_cid), "base58 prev"),
        (f.with("prev", raw_cid), "raw-codec prev"),
        (f.with("prev", "bafyreinotacid"), "garbage prev"),
        (
            f.with("prev", serde_json::json!({"$link": a_cid().to_string()})),
            "link prev",
        ),
        (
            format!(r#"{{"type":"plc_tombstone","prev":null,"sig":"{sig}"}}"#),
            "tombstone with null prev",
        ),
        (
            legacy_genesis()
                .to_json()
                .replace(r#""prev":null"#, &format!(r#""prev":"{}""#, a_cid())),
            "create with a prev",
        ),
    ]);
    assert_eq!(
        SignedOperation::from_json(&f.with("sig", format!("{sig}AA"))),
        Err(PlcError::SignatureLength(66))
    );
    assert!(matches!(
        SignedOperation::from_json(&f.with("sig", format!("{sig}=="))),
        Err(PlcError::SignatureEncoding(_))
    ));
    assert!(matches!(
        SignedOperation::from_json(&f.with("prev", "bafyreinotacid")),
        Err(PlcError::BadPrev(_))
    ));
    assert_eq!(
        SignedOperation::from_json(&f.without("prev")),
        Err(PlcError::MissingField {
            op_type: TYPE_OPERATION,
            field: "prev"
        })
    );
}

#[test]
fn strict_json_rejects_bad_shapes() {
    let f = Fixture::new();
    all_rejected(vec![
        ("[]".into(), "not an object"),
        ("\"plc_operation\"".into(), "not an object"),
        ("{".into(), "malformed"),
        (f.with("type", "plc_update"), "unknown type"),
        (f.with("type", 1), "non-string type"),
        (f.without("type"), "no type"),
        (f.without("services"), "no services"),
        (f.with("extra", "x"), "unknown field"),
        (
            f.with("rotationKeys", json!([1])),
            "non-string rotation key",
        ),
        (
            f.with("rotationKeys", "did:key:z"),
            "rotationKeys not an array",
        ),
        (f.with("alsoKnownAs", json!({})), "alsoKnownAs not an array"),
        (
            f.with("verificationMethods", json!({"atproto": 5})),
            "non-string method",
        ),
        (
            f.with("verificationMethods", json!([])),
            "methods not an object",
        ),
        (
            f.with("services", json!({"a": {"type": "t"}})),
            "service without endpoint",
        ),
        (
            f.with(
                "services",
                json!({"a": {"type": "t", "endpoint": "e", "x": "y"}}),
            ),
            "service with an extra field",
        ),
        (
            f.with("services", json!({"a": "https://x"})),
            "service not an object",
        ),
        (
            format!(
                r#"{{"type":"plc_operation","type":"plc_tombstone",{}"#,
                &f.op.to_json()[24..]
            ),
            "duplicate key",
        ),
        (
            format!(
                r#"{{"type":"plc_tombstone","prev":"{}","sig":"{}","rotationKeys":[]}}"#,
                a_cid(),
                f.sig
            ),
            "tombstone with extra field",
        ),
    ]);
    assert_eq!(
        SignedOperation::from_json(&f.without("type")),
        Err(PlcError::MissingType)
    );
    assert_eq!(
        SignedOperation::from_json(&f.with("type", "plc_update")),
        Err(PlcError::UnknownType("plc_update".into()))
    );
}

#[test]
fn strict_cbor_decoding() {
    let rotation = key(Curve::K256, 1);
    let op = genesis(&[&rotation], &rotation).sign(&rotation);
    let bytes = op.to_cbor();
    assert_eq!(SignedOperation::from_cbor(&bytes).unwrap(), op);
    assert!(matches!(
        SignedOperation::from_cbor(&bytes[..bytes.len() - 1]),
        Err(PlcError::Cbor(_))
    ));
    // `prev` as a DAG-CBOR link instead of a string.
    let Ipld::Map(mut map) = op.to_ipld() else {
        panic!("not a map")
    };
    map.insert("prev".into(), Ipld::Link(a_cid()));
    let linked = data::encode(&Ipld::Map(map)).unwrap();
    assert_eq!(
        SignedOperation::from_cbor(&linked),
        Err(PlcError::WrongType {
            field: "prev".into(),
            expected: "a CID string or null"
        })
    );
    // Non-canonical CBOR: the same map with two keys swapped.
    let swapped = {
        // {"a": 1, "bb": 2} canonical is a2 61 61 01 62 62 62 02.
        b"\xa2\x62bb\x02\x61a\x01".to_vec()
    };
    assert!(matches!(
        SignedOperation::from_cbor(&swapped),
        Err(PlcError::Cbor(_))
    ));
    assert_eq!(
        SignedOperation::from_cbor(b"\x80"),
        Err(PlcError::NotAnObject)
    );
}

/// A JSON value shaped like an operation: known and unknown field names,
/// values of every JSON kind, some of them plausible.
fn operation_like() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::from(1.5)),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("plc_operation"),
            Just("plc_tombstone"),
            Just("create"),
            Just("did:key:zQ3shhCGUqDKjStzuDxPkTxN6ujddP4RkEKJJouJGRRkaLGbg"),
            Just("bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm"),
            Just("9NuYV7AqwHVTc0YuWzNV3CJafsSZWH7qCxHRUIP2xWlB-YexXC1OaYAnUayiCXLVzRQ8WBXIqF-SvZdNalwcjA"),
            Just("at://alice.test"),
        ]
        .prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("endpoint".to_owned()),
                    "[a-z]{1,4}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    let field = prop_oneof![
        Just("type"),
        Just("rotationKeys"),
        Just("verificationMethods"),
        Just("alsoKnownAs"),
        Just("services"),
        Just("prev"),
        Just("sig"),
        Just("signingKey"),
        Just("recoveryKey"),
        Just("handle"),
        Just("service"),
        Just("other"),
    ];
    proptest::collection::btree_map(field, value, 0..9).prop_map(|m| {
        serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_json_never_panics(input in "\\PC{0,200}") {
        let _ = SignedOperation::from_json(&input);
        let _ = Operation::from_json(&input);
        let _ = serde_json::from_str::<SignedOperation>(&input);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = SignedOperation::from_cbor(&bytes);
        let _ = SignedOperation::from_json(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn operation_like_json_never_panics_and_round_trips(value in operation_like()) {
        let json = value.to_string();
        if let Ok(op) = SignedOperation::from_json(&json) {
            prop_assert_eq!(SignedOperation::from_json(&op.to_json()), Ok(op.clone()));
            prop_assert_eq!(SignedOperation::from_cbor(&op.to_cbor()), Ok(op.clone()));
            let _ = op.did();
            let _ = op.operation.rotation_keys();
        }
        if let Ok(op) = Operation::from_json(&json) {
            let again = serde_json::to_string(&op).unwrap();
            prop_assert_eq!(Operation::from_json(&again), Ok(op));
        }
        let _ = SignedOperation::from_cbor(&data::encode(&crate::data::json_to_ipld(&value).unwrap_or(Ipld::Null)).unwrap_or_default());
    }

    #[test]
    fn any_content_signs_verifies_and_round_trips(
        seed in 1u8..200,
        aka in proptest::collection::vec("\\PC{0,30}", 0..4),
        methods in proptest::collection::btree_map("\\PC{0,8}", "\\PC{0,30}", 0..3),
        endpoint in "\\PC{0,40}",
        with_prev in any::<bool>(),
    ) {
        let rotation = key(Curve::K256, seed);
        let op = Operation::Plc(PlcOperation {
            rotation_keys: vec![rotation.public_key().to_did_key()],
            verification_methods: methods,
            also_known_as: aka,
            services: BTreeMap::from([("s".to_owned(), Service { service_type: "T".into(), endpoint })]),
            prev: with_prev.then(a_cid),
        });
        let signed = op.sign(&rotation);
        prop_assert_eq!(verify_signature(&signed, &[rotation.public_key()]), Ok(0));
        prop_assert_eq!(SignedOperation::from_json(&signed.to_json()), Ok(signed.clone()));
        prop_assert_eq!(SignedOperation::from_cbor(&signed.to_cbor()), Ok(signed.clone()));
        prop_assert_eq!(signed.did().is_ok(), !with_prev);
    }
}
