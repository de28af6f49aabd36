//! `xrpc_params`: XRPC query parameters and the identifier syntax they
//! carry.
//!
//! The input is text (lossy UTF-8): a query string such as
//! `repo=alice.test&collection=app.bsky.feed.post&limit=10`, or a bare
//! identifier. It goes three ways:
//!
//! - through the server's own query extractor ([`Params`]) into structs
//!   of the shapes the handlers take (`listRecords`, `getRecord`,
//!   `getServiceAuth`, ...), whose fields are then parsed as those
//!   handlers parse them;
//! - through `form_urlencoded` as the sync API reads its parameters
//!   (repeated keys allowed), each value parsed by what its name means;
//! - whole, to every identifier parser.
//!
//! (The sync API's `Query` and the firehose's `cursor` parser are private
//! to their crates; what they do with a value is done here with the same
//! public parsers.)

use std::fmt::Display;
use std::str::FromStr;

use aurora_core::cid::Cid;
use aurora_core::syntax::{
    AtIdentifier, AtUri, CidString, Datetime, Did, Handle, Language, Nsid, RecordKey, Tid, Uri,
};
use aurora_server::xrpc::Params;
use axum::extract::FromRequestParts as _;
use futures::FutureExt as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::Outcome;

/// `com.atproto.repo.listRecords`.
#[derive(Debug, Deserialize)]
struct ListRecords {
    repo: String,
    collection: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    reverse: Option<bool>,
}

/// `com.atproto.repo.getRecord`.
#[derive(Debug, Deserialize)]
struct GetRecord {
    repo: String,
    collection: String,
    rkey: String,
    #[serde(default)]
    cid: Option<String>,
}

/// `com.atproto.server.getServiceAuth`.
#[derive(Debug, Deserialize)]
struct ServiceAuth {
    aud: String,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    lxm: Option<String>,
}

/// `com.atproto.repo.listMissingBlobs`, `com.atproto.admin.getInviteCodes`.
#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    sort: Option<String>,
}

/// `resolveHandle`, `resolveDid`, `getAccountInfo`, `resolveIdentity`.
#[derive(Debug, Deserialize)]
struct Identity {
    #[serde(default)]
    handle: Option<String>,
    #[serde(default)]
    did: Option<String>,
    #[serde(default)]
    identifier: Option<String>,
}

/// Parses `text` every way the server parses parameters (see the
/// [module docs](self)) and checks that each identifier parser that
/// accepts a value gives a value that prints as a string it parses back
/// to the same value (for handles: the lower-cased input; for the others:
/// the input itself), and that AT URIs, TIDs and CIDs are consistent with
/// their parts.
pub fn xrpc_params(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let mut accepted = false;

    if let Some(p) = extract::<ListRecords>(&text) {
        accepted = true;
        let _ = repo_param(&p.repo);
        let _ = check::<Nsid>(&p.collection);
        let _ = p.limit.filter(|l| (1..=1000).contains(l));
        if let Some(cursor) = &p.cursor {
            let _ = check::<RecordKey>(cursor);
        }
        let _ = p.reverse;
    }
    if let Some(p) = extract::<GetRecord>(&text) {
        accepted = true;
        let _ = repo_param(&p.repo);
        let _ = check::<Nsid>(&p.collection);
        let _ = check::<RecordKey>(&p.rkey);
        if let Some(cid) = &p.cid {
            let _ = cid_param(cid);
        }
    }
    if let Some(p) = extract::<ServiceAuth>(&text) {
        accepted = true;
        let _ = check::<Did>(p.aud.split('#').next().unwrap_or_default());
        if let Some(lxm) = &p.lxm {
            let _ = check::<Nsid>(lxm);
        }
        if let Some(exp) = p.exp {
            let _ = chrono::DateTime::from_timestamp(exp, 0);
        }
    }
    if let Some(p) = extract::<Page>(&text) {
        accepted |= p.limit.is_some() || p.cursor.is_some() || p.sort.is_some();
        if let Some(cursor) = &p.cursor {
            let _ = cid_param(cursor);
        }
    }
    if let Some(p) = extract::<Identity>(&text) {
        for value in [&p.handle, &p.did, &p.identifier].into_iter().flatten() {
            accepted |= repo_param(value).is_some();
        }
    }

    for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
        accepted |= by_name(&name, &value);
    }

    accepted |= every_parser(&text);
    if accepted {
        Outcome::Accepted
    } else {
        Outcome::Rejected
    }
}

/// Runs the server's [`Params`] extractor on a request whose query is
/// `query`; `None` when the URI or the parameters are refused.
fn extract<T: DeserializeOwned>(query: &str) -> Option<T> {
    let request = http::Request::builder()
        .uri(format!("/xrpc/com.atproto.fuzz.query?{query}"))
        .body(())
        .ok()?;
    let (mut parts, ()) = request.into_parts();
    let result = Params::<T>::from_request_parts(&mut parts, &())
        .now_or_never()
        .expect("extracting query parameters never waits");
    result.ok().map(|Params(p)| p)
}

/// Parses a value by what its parameter name means, as the handlers do.
fn by_name(name: &str, value: &str) -> bool {
    match name {
        "did" => check::<Did>(value).is_some(),
        "repo" | "identifier" | "actor" => repo_param(value).is_some(),
        "handle" => check::<Handle>(value).is_some(),
        "collection" | "lxm" | "nsid" => check::<Nsid>(value).is_some(),
        "rkey" => check::<RecordKey>(value).is_some(),
        "since" | "rev" => check::<Tid>(value).is_some(),
        "cid" | "cids" | "commit" => cid_param(value).is_some(),
        "uri" | "subject" => check_at_uri(value),
        "createdAt" | "datetime" | "time" => check::<Datetime>(value).is_some(),
        "lang" | "langs" => check::<Language>(value).is_some(),
        "limit" => value
            .parse::<usize>()
            .is_ok_and(|n| (1..=1000).contains(&n)),
        // The firehose's `cursor`: a non-negative `seq`; elsewhere a record
        // key, a CID or a TID.
        "cursor" => {
            let seq = value.parse::<i64>().is_ok_and(|n| n >= 0);
            let rkey = check::<RecordKey>(value).is_some();
            let cid = cid_param(value).is_some();
            seq || rkey || cid
        }
        _ => false,
    }
}

/// Every identifier parser on the whole text.
fn every_parser(text: &str) -> bool {
    let mut accepted = false;
    accepted |= check::<Did>(text).is_some();
    accepted |= check::<Handle>(text).is_some();
    accepted |= check::<Nsid>(text).is_some();
    accepted |= check::<RecordKey>(text).is_some();
    accepted |= check::<Tid>(text).is_some();
    accepted |= check::<Datetime>(text).is_some();
    accepted |= check::<Language>(text).is_some();
    accepted |= check::<Uri>(text).is_some();
    accepted |= check::<CidString>(text).is_some();
    accepted |= cid_param(text).is_some();
    accepted |= repo_param(text).is_some();
    accepted |= check_at_uri(text);
    accepted
}

/// A `repo` / `identifier` parameter: a DID or handle, as the handlers
/// parse it (trimmed).
fn repo_param(value: &str) -> Option<AtIdentifier> {
    let id = AtIdentifier::parse(value.trim()).ok()?;
    let again = AtIdentifier::parse(&id.to_string());
    assert_eq!(
        again.as_ref(),
        Ok(&id),
        "an at-identifier does not round-trip"
    );
    match &id {
        AtIdentifier::Did(d) => {
            assert!(value.trim().starts_with("did:") && check::<Did>(d.as_str()).is_some());
        }
        AtIdentifier::Handle(h) => assert!(check::<Handle>(h.as_str()).is_some()),
    }
    Some(id)
}

/// A CID parameter, as the handlers parse it, and its lexicon string form.
fn cid_param(value: &str) -> Option<Cid> {
    if let Ok(s) = CidString::parse(value) {
        // A syntactically valid CID string either decodes or not; if it
        // decodes, its canonical form decodes to the same CID.
        if let Ok(cid) = s.to_cid() {
            assert_eq!(
                Cid::try_from(cid.to_string().as_str()).ok(),
                Some(cid),
                "a CID does not round-trip through its string"
            );
        }
    }
    let cid = Cid::try_from(value).ok()?;
    let again = Cid::try_from(cid.to_string().as_str());
    assert_eq!(
        again.ok(),
        Some(cid),
        "a CID does not round-trip through its string"
    );
    assert_eq!(
        Cid::try_from(cid.to_bytes().as_slice()).ok(),
        Some(cid),
        "a CID does not round-trip through its bytes"
    );
    Some(cid)
}

/// An AT URI, with its parts.
fn check_at_uri(value: &str) -> bool {
    let Some(uri) = check::<AtUri>(value) else {
        return false;
    };
    let authority = uri.authority();
    let collection = uri.collection();
    let rkey = uri.rkey();
    assert!(
        rkey.is_none() || collection.is_some(),
        "an AT URI with a record key and no collection"
    );
    let mut rebuilt = format!("at://{authority}");
    if let Some(c) = &collection {
        rebuilt.push('/');
        rebuilt.push_str(c.as_str());
    }
    if let Some(r) = &rkey {
        rebuilt.push('/');
        rebuilt.push_str(r.as_str());
    }
    // A handle authority comes back lower-cased; the URI keeps its case.
    assert!(
        AtUri::parse(rebuilt.as_str()).is_ok() && rebuilt.eq_ignore_ascii_case(uri.as_str()),
        "{uri:?} is not its parts: {rebuilt:?}"
    );
    if matches!(authority, AtIdentifier::Did(_)) {
        assert_eq!(rebuilt, uri.as_str(), "an AT URI is not its parts");
    }
    if let (AtIdentifier::Did(did), Some(c), Some(r)) = (&authority, &collection, &rkey) {
        assert_eq!(
            AtUri::for_record(did, c, r),
            uri,
            "for_record gives another URI"
        );
    }
    true
}

/// Parses `value` as `T` and, if it parses, checks the display round trip.
fn check<T>(value: &str) -> Option<T>
where
    T: FromStr + Display + PartialEq + std::fmt::Debug,
    T::Err: std::fmt::Debug,
{
    let parsed = value.parse::<T>().ok()?;
    let shown = parsed.to_string();
    let again = shown.parse::<T>();
    assert!(
        again.as_ref().is_ok_and(|a| a == &parsed),
        "{parsed:?} does not round-trip through {shown:?}: {again:?}"
    );
    extra_checks(value, &shown);
    Some(parsed)
}

/// Per-type promises beyond the round trip, by what `shown` parses as.
fn extra_checks(input: &str, shown: &str) {
    // Only handles normalise (to lower case); everything else keeps the
    // input exactly.
    if shown != input {
        assert_eq!(
            shown,
            input.to_ascii_lowercase(),
            "a parser changed its input beyond lower-casing"
        );
        assert!(Handle::parse(input).is_ok(), "only handles are normalised");
    }
    if let Ok(tid) = Tid::parse(shown) {
        assert_eq!(tid.value() >> 10, tid.timestamp_micros());
        assert_eq!(u64::from(tid.clock_id()), tid.value() & 0x3ff);
    }
    if let Ok(dt) = Datetime::parse(shown) {
        let _ = dt.to_chrono();
    }
    if let Ok(did) = Did::parse(shown) {
        assert!(!did.method().is_empty(), "a DID without a method");
    }
    if let Ok(nsid) = Nsid::parse(shown) {
        assert_eq!(
            format!("{}.{}", nsid.authority(), nsid.name()),
            shown,
            "an NSID is not its authority and name"
        );
    }
}
