//! The shared interop vectors (`../shared/interop-tests/crypto`): signature
//! verification including the invalid high-S and DER cases, and the W3C
//! `did:key` test keys of both curves.

use base64::Engine;
use multibase::Base;
use serde_json::Value;

use super::keys::tests::flip_s;
use super::{CryptoError, Curve, PublicKey, SigningKey};

use crate::data::BASE64_LENIENT as BASE64;

/// The cases of `crypto/<name>`, or `None` (with a `SKIP:` line) when the
/// interop folder is absent.
fn fixtures(name: &str) -> Option<Vec<Value>> {
    crate::interop::cases(&format!("crypto/{name}"))
}

fn field<'a>(case: &'a Value, key: &str) -> Result<&'a str, String> {
    case[key]
        .as_str()
        .ok_or_else(|| format!("missing string field {key:?}"))
}

/// Runs `check` on every case, prints how many passed, and fails listing
/// every case that did not.
fn run(name: &str, cases: &[Value], check: impl Fn(&Value) -> Result<(), String>) {
    let mut failures = Vec::new();
    for case in cases {
        if let Err(e) = check(case) {
            let label = case["comment"]
                .as_str()
                .or_else(|| case["publicDidKey"].as_str())
                .unwrap_or("?");
            failures.push(format!("{label}: {e}"));
        }
    }
    let passed = cases.len() - failures.len();
    eprintln!("{name}: {passed} cases passed");
    assert!(
        failures.is_empty(),
        "{name}: failed cases:\n{}",
        failures.join("\n")
    );
    assert!(passed > 0, "{name}: no cases");
}

fn check_signature_case(case: &Value) -> Result<(), String> {
    let curve = Curve::from_jwt_alg(field(case, "algorithm")?).map_err(|e| e.to_string())?;
    let did = field(case, "publicKeyDid")?;
    let key = PublicKey::from_did_key(did).map_err(|e| format!("did:key: {e}"))?;
    if key.curve() != curve {
        return Err(format!(
            "did:key is {}, algorithm says {curve}",
            key.curve()
        ));
    }
    if key.to_did_key() != did {
        return Err(format!("did:key re-encodes as {}", key.to_did_key()));
    }
    // `publicKeyMultibase` is the legacy DID-document form: the bare point.
    let legacy = PublicKey::from_legacy_multibase(curve, field(case, "publicKeyMultibase")?)
        .map_err(|e| format!("publicKeyMultibase: {e}"))?;
    if legacy != key {
        return Err("publicKeyMultibase is not the did:key's key".into());
    }

    let message = BASE64
        .decode(field(case, "messageBase64")?)
        .map_err(|e| format!("messageBase64: {e}"))?;
    let signature = BASE64
        .decode(field(case, "signatureBase64")?)
        .map_err(|e| format!("signatureBase64: {e}"))?;
    let valid = case["validSignature"]
        .as_bool()
        .ok_or("missing validSignature")?;
    let tags: Vec<&str> = case["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();

    let result = key.verify(&message, &signature);
    match (valid, &result) {
        (true, Ok(())) | (false, Err(_)) => {}
        (true, Err(e)) => return Err(format!("valid signature rejected: {e}")),
        (false, Ok(())) => return Err("invalid signature accepted".into()),
    }
    if tags.contains(&"high-s") {
        if result != Err(CryptoError::HighSSignature) {
            return Err(format!(
                "high-S signature: expected HighSSignature, got {result:?}"
            ));
        }
        // It is the malleable twin of a signature that does verify.
        let low = flip_s(curve, &signature);
        key.verify(&message, &low)
            .map_err(|e| format!("low-S twin of the high-S signature: {e}"))?;
    }
    if tags.contains(&"der-encoded") && !matches!(result, Err(CryptoError::BadSignatureLength(_))) {
        return Err(format!(
            "DER signature: expected BadSignatureLength, got {result:?}"
        ));
    }
    Ok(())
}

#[test]
fn interop_signature_fixtures() {
    let name = "signature-fixtures.json";
    let Some(cases) = fixtures(name) else {
        return;
    };
    run(name, &cases, check_signature_case);
}

/// Derives the public key from the private key (hex or base58btc), checks
/// its `did:key`, parses the `did:key` back, and signs with the key.
fn check_w3c_case(curve: Curve, case: &Value) -> Result<(), String> {
    let private = if let Ok(hex) = field(case, "privateKeyBytesHex") {
        SigningKey::from_hex(curve, hex).map_err(|e| e.to_string())?
    } else {
        let bytes = Base::Base58Btc
            .decode(field(case, "privateKeyBytesBase58")?)
            .map_err(|e| format!("privateKeyBytesBase58: {e}"))?;
        SigningKey::from_bytes(curve, &bytes).map_err(|e| e.to_string())?
    };
    let expected = field(case, "publicDidKey")?;
    let public = private.public_key();
    if public.to_did_key() != expected {
        return Err(format!("derived {}", public.to_did_key()));
    }
    let parsed = PublicKey::from_did_key(expected).map_err(|e| format!("parse: {e}"))?;
    if parsed != public || parsed.curve() != curve {
        return Err("parsed did:key is not the derived key".into());
    }
    let signature = private.sign(b"interop");
    parsed
        .verify(b"interop", &signature)
        .map_err(|e| format!("round trip: {e}"))
}

#[test]
fn interop_w3c_didkey_k256() {
    let name = "w3c_didkey_K256.json";
    let Some(cases) = fixtures(name) else {
        return;
    };
    run(name, &cases, |case| check_w3c_case(Curve::K256, case));
}

#[test]
fn interop_w3c_didkey_p256() {
    let name = "w3c_didkey_P256.json";
    let Some(cases) = fixtures(name) else {
        return;
    };
    run(name, &cases, |case| check_w3c_case(Curve::P256, case));
}
