//! Hostile input against the live server: a corpus of 500+ malformed,
//! oversized, truncated and forged requests, sent as raw HTTP/1.1 bytes
//! over loopback (so that paths reach the server exactly as written, `..`
//! and bad percent-escapes included).
//!
//! Every case must be answered with a 4xx and an XRPC error body
//! (`{"error", "message"}`), never a 5xx, a panic or a dropped connection;
//! and the whole database — every row of every table — must be the same
//! afterwards as before.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use aurora_core::syntax::Did;
use aurora_server::auth::tokens::{AccessScope, SessionTokens};
use aurora_storage_testkit::plc::TestPlcDirectory;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{TimeDelta, Utc};
use common::dump::{connect, differences, dump, sqlite_url};
use common::pds::{Client, rkey_of, server_with, sign_up};
use common::{Db, TestServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JWT_SECRET: &str = "the session secret of the malformed-request test";
/// Blob limit for the test server, so oversize uploads stay small.
const BLOB_MAX: usize = 256 * 1024;

/// One request of the corpus: a name for the report and its raw bytes.
struct Case {
    name: String,
    request: Vec<u8>,
    /// Close our sending side after the request (a truncated body).
    truncated: bool,
    /// Not HTTP the server can parse: refused by the HTTP layer before any
    /// XRPC handler, so a 4xx without an XRPC body is the right answer.
    protocol: bool,
}

/// What a case authenticates with.
#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    /// A whole `Authorization` header value.
    Header(String),
}

impl Auth {
    fn header(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::Bearer(t) => format!("Authorization: Bearer {t}\r\n"),
            Self::Header(h) => format!("Authorization: {h}\r\n"),
        }
    }
}

/// Collects the cases.
struct Corpus {
    host: String,
    cases: Vec<Case>,
}

impl Corpus {
    fn raw(&mut self, name: impl Into<String>, request: Vec<u8>) {
        self.cases.push(Case {
            name: name.into(),
            request,
            truncated: false,
            protocol: false,
        });
    }

    /// `GET path` (path and query exactly as given).
    fn get(&mut self, name: impl Into<String>, path: &str, auth: &Auth) {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{}Connection: close\r\n\r\n",
            self.host,
            auth.header()
        );
        self.raw(name, head.into_bytes());
    }

    /// `POST /xrpc/{nsid}` with `body` as `content_type` (none when `None`).
    fn post(
        &mut self,
        name: impl Into<String>,
        nsid: &str,
        auth: &Auth,
        content_type: Option<&str>,
        body: &[u8],
    ) {
        let mut request = format!(
            "POST /xrpc/{nsid} HTTP/1.1\r\nHost: {}\r\n{}{}Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            auth.header(),
            content_type.map_or_else(String::new, |ct| format!("Content-Type: {ct}\r\n")),
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.raw(name, request);
    }

    fn post_json(&mut self, name: impl Into<String>, nsid: &str, auth: &Auth, body: &str) {
        self.post(name, nsid, auth, Some("application/json"), body.as_bytes());
    }

    /// A body that promises `declared` bytes, of which `sent` arrive before
    /// the client stops sending.
    fn truncated(
        &mut self,
        name: &str,
        nsid: &str,
        auth: &Auth,
        ct: &str,
        declared: usize,
        sent: usize,
    ) {
        let mut request = format!(
            "POST /xrpc/{nsid} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: {ct}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n",
            self.host,
            auth.header(),
        )
        .into_bytes();
        request.extend(std::iter::repeat_n(b'{', sent.min(1)));
        request.extend(std::iter::repeat_n(b'a', sent.saturating_sub(1)));
        self.cases.push(Case {
            name: name.to_owned(),
            request,
            truncated: true,
            protocol: false,
        });
    }
}

/// The response to one case: status, content type and body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// Sends one case on a fresh connection and reads the whole answer.
async fn send(addr: std::net::SocketAddr, case: &Case) -> Result<Answer, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    // The server may answer (and stop reading) before a large body is
    // sent; what it answered is what counts.
    let _ = stream.write_all(&case.request).await;
    if case.truncated {
        let _ = stream.shutdown().await;
    }
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?
        .or_else(|e| {
            // A reset after a complete answer (unread request bytes) is fine.
            if raw.is_empty() {
                Err(e.to_string())
            } else {
                Ok(raw.len())
            }
        })?;
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete answer ({} bytes)", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(Answer {
        status,
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("truncated chunk")?;
    }
}

/// Why an answer is not a proper refusal, if it is not.
fn judge(case: &Case, answer: &Answer) -> Option<String> {
    let body = String::from_utf8_lossy(&answer.body);
    if !(400..500).contains(&answer.status) {
        return Some(format!("status {}: {body:.300}", answer.status));
    }
    if case.protocol {
        return None;
    }
    if !answer.content_type.starts_with("application/json") {
        return Some(format!(
            "status {} with content type {:?}: {body:.300}",
            answer.status, answer.content_type
        ));
    }
    let Ok(json) = serde_json::from_slice::<Value>(&answer.body) else {
        return Some(format!(
            "status {}, body not JSON: {body:.300}",
            answer.status
        ));
    };
    let error_ok = json["error"].as_str().is_some_and(|e| !e.is_empty());
    let message_ok = json["message"].as_str().is_some_and(|m| !m.is_empty());
    (!error_ok || !message_ok)
        .then(|| format!("status {}, not an XRPC error body: {json}", answer.status))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A JWT with the given header and claims and a signature of junk.
fn unsigned_jwt(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// What the corpus is built from: two accounts and one of Alice's records
/// and blobs.
struct Fixture {
    alice: String,
    alice_token: String,
    alice_refresh: String,
    bob_token: String,
    rkey: String,
    record_cid: String,
    blob_cid: String,
    service_did: String,
}

/// Malformed values of each identifier kind (raw text, percent-encoded
/// where it goes into a query).
fn bad_dids() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "did",
        "did:",
        "did:plc",
        "did:plc:",
        "alice",
        "DID:PLC:abc",
        "did:PLC:abc",
        "did:plc:abc def",
        "did:plc:abc\u{0}",
        "did:plc:ab/../../etc/passwd",
        "../../etc/passwd",
        "did:web:..",
        "did:web:localhost:..:..:etc",
        "did:plc:\u{202e}cba",
        "did:plc:é",
        "did:plc:😀",
        "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa#frag",
        "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa?q=1",
        "did:plc:aaaaaaaaaaaaaaaaaaaaaaa:",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(format!("did:plc:{}", "a".repeat(9000)));
    v
}

fn bad_handles() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "-alice.test",
        "alice-.test",
        "alice..test",
        ".alice.test",
        "alice.test.",
        "alice",
        "alice.1test",
        "alice_underscore.test",
        "alice.test/../../etc",
        "alice.test\u{0}",
        "ålice.test",
        "xn--.test",
        "😀.test",
        "alice test.test",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(format!("{}.test", "a".repeat(64)));
    v.push(format!("{}test", "abcdefghi.".repeat(26)));
    v
}

fn bad_nsids() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "app",
        "app.bsky",
        "app.bsky.feed.post.",
        ".app.bsky.feed.post",
        "app..bsky.post",
        "1app.bsky.post",
        "app.bsky.feed/post",
        "app.bsky.feed.post\u{0}",
        "../../etc/passwd",
        "app.bsky.feed.p*st",
        "app.bsky.feed.pöst",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(format!("app.bsky.{}", "a".repeat(400)));
    v
}

fn bad_rkeys() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        ".",
        "..",
        "a/b",
        "../../etc/passwd",
        "a b",
        "a\u{0}",
        "é",
        "a#b",
        "a?b",
        "%2e%2e",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push("a".repeat(513));
    v
}

fn bad_cids() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "b",
        "bafy",
        "Qm",
        "zzzz",
        "BAFYREI",
        "../../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm/../x",
        "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hp\u{0}",
        "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hp1",
        "bafkreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm!",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(format!("bafkrei{}", "a".repeat(5000)));
    v
}

fn bad_limits() -> Vec<&'static str> {
    vec![
        "0",
        "-1",
        "abc",
        "1e3",
        "1.5",
        "100000",
        "99999999999999999999999",
        "0x10",
        " 5",
    ]
}

fn bad_cursors() -> Vec<String> {
    vec![
        "-5".to_owned(),
        "abc".to_owned(),
        "99999999999999999999999".to_owned(),
        "1.5".to_owned(),
        "\u{0}".to_owned(),
        "a".repeat(5000),
    ]
}

fn q(value: &str) -> String {
    percent_encode(value)
}

/// Identifier and parameter cases against the query (GET) endpoints.
fn query_cases(c: &mut Corpus, f: &Fixture) {
    let none = Auth::None;
    let alice = &f.alice;
    let post = "app.bsky.feed.post";
    for did in bad_dids() {
        let d = q(&did);
        c.get(
            format!("describeRepo repo={did:.40}"),
            &format!("/xrpc/com.atproto.repo.describeRepo?repo={d}"),
            &none,
        );
        c.get(
            format!("listRecords repo={did:.40}"),
            &format!("/xrpc/com.atproto.repo.listRecords?repo={d}&collection={post}"),
            &none,
        );
        c.get(
            format!("sync.getRepo did={did:.40}"),
            &format!("/xrpc/com.atproto.sync.getRepo?did={d}"),
            &none,
        );
        c.get(
            format!("sync.getLatestCommit did={did:.40}"),
            &format!("/xrpc/com.atproto.sync.getLatestCommit?did={d}"),
            &none,
        );
        c.get(
            format!("sync.getBlob did={did:.40}"),
            &format!("/xrpc/com.atproto.sync.getBlob?did={d}&cid={}", f.blob_cid),
            &none,
        );
        c.get(
            format!("sync.listBlobs did={did:.40}"),
            &format!("/xrpc/com.atproto.sync.listBlobs?did={d}"),
            &none,
        );
        c.get(
            format!("sync.getRepoStatus did={did:.40}"),
            &format!("/xrpc/com.atproto.sync.getRepoStatus?did={d}"),
            &none,
        );
        c.get(
            format!("identity.resolveDid did={did:.40}"),
            &format!("/xrpc/com.atproto.identity.resolveDid?did={d}"),
            &none,
        );
    }
    for handle in bad_handles() {
        let h = q(&handle);
        c.get(
            format!("resolveHandle {handle:.40}"),
            &format!("/xrpc/com.atproto.identity.resolveHandle?handle={h}"),
            &none,
        );
        c.get(
            format!("getRecord repo={handle:.40}"),
            &format!(
                "/xrpc/com.atproto.repo.getRecord?repo={h}&collection={post}&rkey={}",
                f.rkey
            ),
            &none,
        );
        c.get(
            format!("describeRepo repo={handle:.40}"),
            &format!("/xrpc/com.atproto.repo.describeRepo?repo={h}"),
            &none,
        );
    }
    for nsid in bad_nsids() {
        let n = q(&nsid);
        c.get(
            format!("getRecord collection={nsid:.40}"),
            &format!(
                "/xrpc/com.atproto.repo.getRecord?repo={alice}&collection={n}&rkey={}",
                f.rkey
            ),
            &none,
        );
        c.get(
            format!("listRecords collection={nsid:.40}"),
            &format!("/xrpc/com.atproto.repo.listRecords?repo={alice}&collection={n}"),
            &none,
        );
        c.get(
            format!("sync.getRecord collection={nsid:.40}"),
            &format!(
                "/xrpc/com.atproto.sync.getRecord?did={alice}&collection={n}&rkey={}",
                f.rkey
            ),
            &none,
        );
    }
    for rkey in bad_rkeys() {
        let r = q(&rkey);
        c.get(
            format!("getRecord rkey={rkey:.40}"),
            &format!("/xrpc/com.atproto.repo.getRecord?repo={alice}&collection={post}&rkey={r}"),
            &none,
        );
        c.get(
            format!("sync.getRecord rkey={rkey:.40}"),
            &format!("/xrpc/com.atproto.sync.getRecord?did={alice}&collection={post}&rkey={r}"),
            &none,
        );
    }
    for cid in bad_cids() {
        let x = q(&cid);
        c.get(
            format!("sync.getBlob cid={cid:.40}"),
            &format!("/xrpc/com.atproto.sync.getBlob?did={alice}&cid={x}"),
            &none,
        );
        c.get(
            format!("getRecord cid={cid:.40}"),
            &format!(
                "/xrpc/com.atproto.repo.getRecord?repo={alice}&collection={post}&rkey={}&cid={x}",
                f.rkey
            ),
            &none,
        );
        c.get(
            format!("sync.getBlocks cids={cid:.40}"),
            &format!("/xrpc/com.atproto.sync.getBlocks?did={alice}&cids={x}"),
            &none,
        );
        c.get(
            format!("sync.getBlob raw cid={cid:.40}"),
            &format!(
                "/xrpc/com.atproto.sync.getBlob?did={alice}&cid={}",
                cid.replace([' ', '\0'], "")
            ),
            &none,
        );
    }
    for limit in bad_limits() {
        let l = q(limit);
        c.get(
            format!("listRecords limit={limit}"),
            &format!("/xrpc/com.atproto.repo.listRecords?repo={alice}&collection={post}&limit={l}"),
            &none,
        );
        c.get(
            format!("sync.listRepos limit={limit}"),
            &format!("/xrpc/com.atproto.sync.listRepos?limit={l}"),
            &none,
        );
        c.get(
            format!("sync.listBlobs limit={limit}"),
            &format!("/xrpc/com.atproto.sync.listBlobs?did={alice}&limit={l}"),
            &none,
        );
    }
    for cursor in bad_cursors() {
        let x = q(&cursor);
        c.get(
            format!("sync.listRepos cursor={cursor:.20}"),
            &format!("/xrpc/com.atproto.sync.listRepos?cursor={x}"),
            &none,
        );
        c.get(
            format!("subscribeRepos over plain HTTP cursor={cursor:.20}"),
            &format!("/xrpc/com.atproto.sync.subscribeRepos?cursor={x}"),
            &none,
        );
    }
    for since in ["notatid", "3333333333333333333333", "zzzzzzzzzzzzz", "%00"] {
        c.get(
            format!("sync.getRepo since={since}"),
            &format!("/xrpc/com.atproto.sync.getRepo?did={alice}&since={since}"),
            &none,
        );
    }
    // Missing and repeated parameters, bad percent-escapes, unknown values.
    let more: Vec<(&str, String)> = vec![
        (
            "getRecord no params",
            "/xrpc/com.atproto.repo.getRecord".to_owned(),
        ),
        (
            "getRecord no rkey",
            format!("/xrpc/com.atproto.repo.getRecord?repo={alice}&collection={post}"),
        ),
        (
            "getRecord no collection",
            format!(
                "/xrpc/com.atproto.repo.getRecord?repo={alice}&rkey={}",
                f.rkey
            ),
        ),
        (
            "getRecord repeated repo",
            format!(
                "/xrpc/com.atproto.repo.getRecord?repo={alice}&repo={alice}&collection={post}&rkey={}",
                f.rkey
            ),
        ),
        (
            "getRecord unknown record",
            format!(
                "/xrpc/com.atproto.repo.getRecord?repo={alice}&collection={post}&rkey=3zzzzzzzzzzzz"
            ),
        ),
        (
            "getRecord unknown repo",
            format!(
                "/xrpc/com.atproto.repo.getRecord?repo=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa&collection={post}&rkey={}",
                f.rkey
            ),
        ),
        (
            "getRecord bad escape",
            format!("/xrpc/com.atproto.repo.getRecord?repo=%ZZ&collection={post}&rkey=a"),
        ),
        (
            "getRecord invalid utf-8 escape",
            format!("/xrpc/com.atproto.repo.getRecord?repo=%FF%FE&collection={post}&rkey=a"),
        ),
        (
            "getRecord overlong utf-8",
            format!(
                "/xrpc/com.atproto.repo.getRecord?repo={alice}&collection={post}&rkey=%C0%AE%C0%AE"
            ),
        ),
        (
            "getRecord surrogate utf-8",
            format!(
                "/xrpc/com.atproto.repo.getRecord?repo={alice}&collection={post}&rkey=%ED%A0%80"
            ),
        ),
        (
            "listRecords no params",
            "/xrpc/com.atproto.repo.listRecords".to_owned(),
        ),
        (
            "listRecords reverse=maybe",
            format!(
                "/xrpc/com.atproto.repo.listRecords?repo={alice}&collection={post}&reverse=maybe"
            ),
        ),
        (
            "describeRepo no repo",
            "/xrpc/com.atproto.repo.describeRepo".to_owned(),
        ),
        (
            "describeRepo unknown repo",
            "/xrpc/com.atproto.repo.describeRepo?repo=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
        ),
        (
            "sync.getBlob no cid",
            format!("/xrpc/com.atproto.sync.getBlob?did={alice}"),
        ),
        (
            "sync.getBlob unknown cid",
            format!(
                "/xrpc/com.atproto.sync.getBlob?did={alice}&cid={}",
                f.record_cid
            ),
        ),
        (
            "sync.getBlob other account",
            format!(
                "/xrpc/com.atproto.sync.getBlob?did=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa&cid={}",
                f.blob_cid
            ),
        ),
        (
            "sync.getBlocks no cids",
            format!("/xrpc/com.atproto.sync.getBlocks?did={alice}"),
        ),
        (
            "sync.getBlocks unknown cid",
            format!(
                "/xrpc/com.atproto.sync.getBlocks?did={alice}&cids={}",
                f.blob_cid
            ),
        ),
        (
            "sync.getRecord no rkey",
            format!("/xrpc/com.atproto.sync.getRecord?did={alice}&collection={post}"),
        ),
        (
            "sync.getRepo no did",
            "/xrpc/com.atproto.sync.getRepo".to_owned(),
        ),
        (
            "sync.getLatestCommit unknown",
            "/xrpc/com.atproto.sync.getLatestCommit?did=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
                .to_owned(),
        ),
        (
            "sync.getRepoStatus no did",
            "/xrpc/com.atproto.sync.getRepoStatus".to_owned(),
        ),
        (
            "resolveHandle no handle",
            "/xrpc/com.atproto.identity.resolveHandle".to_owned(),
        ),
        (
            "resolveHandle unknown",
            "/xrpc/com.atproto.identity.resolveHandle?handle=nobody.test".to_owned(),
        ),
        ("invalid method name", "/xrpc/not%20an%20nsid".to_owned()),
        (
            "method name traversal",
            "/xrpc/..%2F..%2Fetc%2Fpasswd".to_owned(),
        ),
        (
            "method name dot-dot",
            "/xrpc/com.atproto.repo.getRecord/../../../etc/passwd".to_owned(),
        ),
        (
            "method name with NUL",
            "/xrpc/com.atproto.repo.getRecord%00".to_owned(),
        ),
        (
            "method name too long",
            format!("/xrpc/com.{}.x", "a".repeat(600)),
        ),
        (
            "query param huge",
            format!(
                "/xrpc/com.atproto.repo.describeRepo?repo={}",
                "a".repeat(60_000)
            ),
        ),
        (
            "procedure with GET",
            "/xrpc/com.atproto.repo.createRecord".to_owned(),
        ),
        (
            "procedure with GET 2",
            "/xrpc/com.atproto.server.createSession".to_owned(),
        ),
        ("no such path", "/../../etc/passwd".to_owned()),
        ("no such path 2", "/xrpc".to_owned()),
    ];
    for (name, path) in more {
        c.get(name, &path, &none);
    }
    // A query endpoint called with POST.
    c.post_json("query with POST", "com.atproto.repo.getRecord", &none, "{}");
    c.post_json(
        "describeServer with POST",
        "com.atproto.server.describeServer",
        &none,
        "{}",
    );
}

/// Malformed bodies for the record procedures, as Alice.
fn record_write_cases(c: &mut Corpus, f: &Fixture) {
    let auth = Auth::Bearer(f.alice_token.clone());
    let alice = &f.alice;
    let post = json!({"$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2026-11-25T12:00:00.000Z"});
    let valid_create = json!({"repo": alice, "collection": "app.bsky.feed.post", "record": post});
    // Not JSON, or JSON of the wrong shape.
    let bodies: Vec<(&str, String)> = vec![
        ("empty body", String::new()),
        ("not json", "not json".to_owned()),
        ("truncated json", r#"{"repo": "#.to_owned()),
        ("trailing garbage", format!("{valid_create} garbage")),
        ("two objects", format!("{valid_create}{valid_create}")),
        ("null", "null".to_owned()),
        ("array", "[]".to_owned()),
        ("string", "\"record\"".to_owned()),
        ("number", "42".to_owned()),
        (
            "deep arrays",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        (
            "deep objects in record",
            format!(
                r#"{{"repo":"{alice}","collection":"app.bsky.feed.post","record":{}1{}}}"#,
                r#"{"a":"#.repeat(5_000),
                "}".repeat(5_000)
            ),
        ),
        (
            "lone surrogate escape",
            format!(
                r#"{{"repo":"{alice}","collection":"app.bsky.feed.post","record":{{"$type":"app.bsky.feed.post","text":"\ud800","createdAt":"2026-11-25T12:00:00.000Z"}}}}"#
            ),
        ),
        (
            "bad escape",
            format!(
                r#"{{"repo":"{alice}","collection":"app.bsky.feed.post","record":{{"$type":"app.bsky.feed.post","text":"\x41","createdAt":"2026-11-25T12:00:00.000Z"}}}}"#
            ),
        ),
        (
            "duplicate keys",
            format!(
                r#"{{"repo":"{alice}","repo":"{alice}","collection":"app.bsky.feed.post","record":{post}}}"#
            ),
        ),
        ("single quotes", format!("{{'repo':'{alice}'}}")),
        ("comments", format!("/* c */ {valid_create}")),
        (
            "NaN",
            format!(
                r#"{{"repo":"{alice}","collection":"app.bsky.feed.post","record":{{"$type":"app.bsky.feed.post","n":NaN}}}}"#
            ),
        ),
        (
            "huge number",
            format!(
                r#"{{"repo":"{alice}","collection":"app.bsky.feed.post","record":{{"$type":"app.bsky.feed.post","text":"x","createdAt":"2026-11-25T12:00:00.000Z","n":1{}}}}}"#,
                "0".repeat(400)
            ),
        ),
        (
            "float in record",
            format!(
                r#"{{"repo":"{alice}","collection":"app.bsky.feed.post","record":{{"$type":"app.bsky.feed.post","text":"x","createdAt":"2026-11-25T12:00:00.000Z","n":1.5}}}}"#
            ),
        ),
    ];
    for (name, body) in &bodies {
        c.post_json(
            format!("createRecord {name}"),
            "com.atproto.repo.createRecord",
            &auth,
            body,
        );
        c.post_json(
            format!("putRecord {name}"),
            "com.atproto.repo.putRecord",
            &auth,
            body,
        );
        c.post_json(
            format!("applyWrites {name}"),
            "com.atproto.repo.applyWrites",
            &auth,
            body,
        );
    }
    // Invalid UTF-8 in the body.
    let mut bad_utf8 = format!(r#"{{"repo":"{alice}","collection":"app.bsky.feed.post","record":{{"$type":"app.bsky.feed.post","text":""#).into_bytes();
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0xc0, 0xaf]);
    bad_utf8.extend_from_slice(br#"","createdAt":"2026-11-25T12:00:00.000Z"}}"#);
    c.post(
        "createRecord invalid utf-8",
        "com.atproto.repo.createRecord",
        &auth,
        Some("application/json"),
        &bad_utf8,
    );
    // Wrong content types for a valid body.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/cbor"),
        Some("application/jsonx"),
        Some(""),
    ] {
        c.post(
            format!("createRecord content type {ct:?}"),
            "com.atproto.repo.createRecord",
            &auth,
            ct,
            valid_create.to_string().as_bytes(),
        );
    }
    // One field at a time wrong.
    let field_cases: Vec<(&str, &str, Value)> = vec![
        ("repo number", "repo", json!(123)),
        ("repo null", "repo", Value::Null),
        ("repo object", "repo", json!({})),
        ("collection bool", "collection", json!(true)),
        (
            "collection array",
            "collection",
            json!(["app.bsky.feed.post"]),
        ),
        ("record string", "record", json!("text")),
        ("record array", "record", json!([post])),
        ("record null", "record", Value::Null),
        ("record number", "record", json!(7)),
        ("rkey object", "rkey", json!({})),
        ("rkey number", "rkey", json!(5)),
        ("validate string", "validate", json!("yes")),
        ("swapCommit number", "swapCommit", json!(5)),
        ("swapCommit bad cid", "swapCommit", json!("bafynotacid")),
        ("swapCommit stale", "swapCommit", json!(f.record_cid)),
        (
            "record $type null",
            "record",
            json!({"$type": null, "text": "x"}),
        ),
        (
            "record $type number",
            "record",
            json!({"$type": 5, "text": "x"}),
        ),
        (
            "record $type other collection",
            "record",
            json!({"$type": "app.bsky.feed.like", "text": "x"}),
        ),
        (
            "record $type empty",
            "record",
            json!({"$type": "", "text": "x"}),
        ),
        (
            "post text wrong type",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": 12, "createdAt": "2026-11-25T12:00:00.000Z"}),
        ),
        (
            "post without createdAt",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "x"}),
        ),
        (
            "post bad createdAt",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "yesterday"}),
        ),
        (
            "post text too long",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "x".repeat(3001), "createdAt": "2026-11-25T12:00:00.000Z"}),
        ),
        (
            "post too many graphemes",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "é".repeat(301), "createdAt": "2026-11-25T12:00:00.000Z"}),
        ),
        (
            "bad $link",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-11-25T12:00:00.000Z", "l": {"$link": "notacid"}}),
        ),
        (
            "bad $bytes",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-11-25T12:00:00.000Z", "b": {"$bytes": "!!!"}}),
        ),
        (
            "$link with extra key",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-11-25T12:00:00.000Z", "l": {"$link": f.record_cid, "x": 1}}),
        ),
        (
            "blob ref bad",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-11-25T12:00:00.000Z", "b": {"$type": "blob", "ref": "x", "mimeType": "image/png", "size": 1}}),
        ),
        (
            "blob ref unknown blob",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-11-25T12:00:00.000Z", "b": {"$type": "blob", "ref": {"$link": f.record_cid}, "mimeType": "image/png", "size": 1}}),
        ),
        (
            "record huge",
            "record",
            json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-11-25T12:00:00.000Z", "pad": "p".repeat(2 * 1024 * 1024)}),
        ),
    ];
    for (name, field, value) in field_cases {
        let mut body = valid_create.clone();
        body[field] = value;
        c.post_json(
            format!("createRecord {name}"),
            "com.atproto.repo.createRecord",
            &auth,
            &body.to_string(),
        );
        let mut put = body.clone();
        if field != "rkey" {
            put["rkey"] = json!("fixed");
        }
        c.post_json(
            format!("putRecord {name}"),
            "com.atproto.repo.putRecord",
            &auth,
            &put.to_string(),
        );
    }
    for collection in bad_nsids() {
        let mut body = valid_create.clone();
        body["collection"] = json!(collection);
        c.post_json(
            format!("createRecord collection={collection:.30}"),
            "com.atproto.repo.createRecord",
            &auth,
            &body.to_string(),
        );
    }
    for rkey in bad_rkeys() {
        let mut body = valid_create.clone();
        body["rkey"] = json!(rkey);
        c.post_json(
            format!("createRecord rkey={rkey:.30}"),
            "com.atproto.repo.createRecord",
            &auth,
            &body.to_string(),
        );
        let del = json!({"repo": alice, "collection": "app.bsky.feed.post", "rkey": rkey});
        c.post_json(
            format!("deleteRecord rkey={rkey:.30}"),
            "com.atproto.repo.deleteRecord",
            &auth,
            &del.to_string(),
        );
    }
    for repo in bad_dids().into_iter().chain(bad_handles()).take(25) {
        let mut body = valid_create.clone();
        body["repo"] = json!(repo);
        c.post_json(
            format!("createRecord repo={repo:.30}"),
            "com.atproto.repo.createRecord",
            &auth,
            &body.to_string(),
        );
    }
    // Deletes and swaps that cannot apply.
    let deletes = vec![
        (
            "deleteRecord swapRecord mismatch",
            json!({"repo": alice, "collection": "app.bsky.feed.post", "rkey": f.rkey, "swapRecord": f.blob_cid}),
        ),
        (
            "deleteRecord swapCommit mismatch",
            json!({"repo": alice, "collection": "app.bsky.feed.post", "rkey": f.rkey, "swapCommit": f.record_cid}),
        ),
        (
            "deleteRecord swapRecord invalid",
            json!({"repo": alice, "collection": "app.bsky.feed.post", "rkey": f.rkey, "swapRecord": "nope"}),
        ),
        (
            "deleteRecord no rkey",
            json!({"repo": alice, "collection": "app.bsky.feed.post"}),
        ),
        (
            "deleteRecord no repo",
            json!({"collection": "app.bsky.feed.post", "rkey": f.rkey}),
        ),
        (
            "putRecord swapRecord mismatch",
            json!({"repo": alice, "collection": "app.bsky.feed.post", "rkey": f.rkey, "record": post, "swapRecord": f.blob_cid}),
        ),
        (
            "putRecord no rkey",
            json!({"repo": alice, "collection": "app.bsky.feed.post", "record": post}),
        ),
        (
            "createRecord existing rkey",
            json!({"repo": alice, "collection": "app.bsky.feed.post", "rkey": f.rkey, "record": post}),
        ),
    ];
    for (name, body) in deletes {
        let nsid = if name.starts_with("deleteRecord") {
            "com.atproto.repo.deleteRecord"
        } else if name.starts_with("putRecord") {
            "com.atproto.repo.putRecord"
        } else {
            "com.atproto.repo.createRecord"
        };
        c.post_json(name, nsid, &auth, &body.to_string());
    }
    // applyWrites: each write of a batch with one bad write must leave all out.
    let good = json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": post});
    let bad_writes: Vec<(&str, Value)> = vec![
        (
            "unknown $type",
            json!({"$type": "com.atproto.repo.applyWrites#explode", "collection": "app.bsky.feed.post", "value": post}),
        ),
        (
            "no $type",
            json!({"collection": "app.bsky.feed.post", "value": post}),
        ),
        (
            "delete missing record",
            json!({"$type": "com.atproto.repo.applyWrites#delete", "collection": "app.bsky.feed.post", "rkey": "3zzzzzzzzzzzz"}),
        ),
        (
            "update missing rkey",
            json!({"$type": "com.atproto.repo.applyWrites#update", "collection": "app.bsky.feed.post", "value": post}),
        ),
        (
            "create bad collection",
            json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "nope", "value": post}),
        ),
        (
            "create bad rkey",
            json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "rkey": "../x", "value": post}),
        ),
        (
            "create existing rkey",
            json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "rkey": f.rkey, "value": post}),
        ),
        (
            "create value string",
            json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": "x"}),
        ),
        ("write is a number", json!(5)),
    ];
    for (name, write) in bad_writes {
        let body = json!({"repo": alice, "writes": [good, write, good]});
        c.post_json(
            format!("applyWrites {name}"),
            "com.atproto.repo.applyWrites",
            &auth,
            &body.to_string(),
        );
    }
    let many: Vec<Value> = (0..201).map(|_| good.clone()).collect();
    c.post_json(
        "applyWrites 201 writes",
        "com.atproto.repo.applyWrites",
        &auth,
        &json!({"repo": alice, "writes": many}).to_string(),
    );
    c.post_json(
        "applyWrites writes object",
        "com.atproto.repo.applyWrites",
        &auth,
        &json!({"repo": alice, "writes": {}}).to_string(),
    );
    c.post_json("applyWrites same rkey twice", "com.atproto.repo.applyWrites", &auth, &json!({"repo": alice, "writes": [
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "rkey": "twice", "value": post},
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "rkey": "twice", "value": post},
    ]}).to_string());
    // Oversize bodies.
    let huge = format!(
        r#"{{"repo":"{alice}","collection":"app.bsky.feed.post","record":{{"$type":"app.bsky.feed.post","text":"{}"}}}}"#,
        "x".repeat(BLOB_MAX * 4)
    );
    c.post_json(
        "createRecord oversize body",
        "com.atproto.repo.createRecord",
        &auth,
        &huge,
    );
    c.post_json(
        "putPreferences oversize body",
        "app.bsky.actor.putPreferences",
        &auth,
        &huge,
    );
    c.truncated(
        "createRecord truncated body",
        "com.atproto.repo.createRecord",
        &auth,
        "application/json",
        5_000,
        100,
    );
}

/// Uploads: oversize, truncated, mislabelled, unauthenticated.
fn upload_cases(c: &mut Corpus, f: &Fixture) {
    let auth = Auth::Bearer(f.alice_token.clone());
    let nsid = "com.atproto.repo.uploadBlob";
    c.post(
        "uploadBlob over the limit",
        nsid,
        &auth,
        Some("image/png"),
        &vec![7u8; BLOB_MAX + 1],
    );
    c.post(
        "uploadBlob far over the limit",
        nsid,
        &auth,
        Some("application/octet-stream"),
        &vec![7u8; BLOB_MAX * 4],
    );
    c.post(
        "uploadBlob without a session",
        nsid,
        &Auth::None,
        Some("image/png"),
        b"\x89PNG\r\n\x1a\n",
    );
    c.post(
        "uploadBlob with bob's refresh-less junk token",
        nsid,
        &Auth::Bearer("junk".into()),
        Some("image/png"),
        b"\x89PNG\r\n\x1a\n",
    );
    c.truncated(
        "uploadBlob truncated",
        nsid,
        &auth,
        "image/png",
        100_000,
        1_000,
    );
    c.truncated(
        "uploadBlob truncated at zero",
        nsid,
        &auth,
        "image/png",
        50_000,
        0,
    );
    c.truncated(
        "uploadBlob truncated over the limit",
        nsid,
        &auth,
        "image/png",
        BLOB_MAX * 2,
        10_000,
    );
    // A chunked body whose chunk sizes lie.
    let mut chunked = format!(
        "POST /xrpc/{nsid} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        c.host,
        auth.header()
    )
    .into_bytes();
    chunked.extend_from_slice(b"10\r\nshort\r\nzz\r\n");
    c.cases.push(Case {
        name: "uploadBlob broken chunked body".into(),
        request: chunked,
        truncated: true,
        protocol: false,
    });
    let mut oversize_chunked = format!(
        "POST /xrpc/{nsid} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        c.host,
        auth.header()
    )
    .into_bytes();
    for _ in 0..(BLOB_MAX / 8192 + 2) {
        oversize_chunked.extend_from_slice(b"2000\r\n");
        oversize_chunked.extend(std::iter::repeat_n(b'z', 8192));
        oversize_chunked.extend_from_slice(b"\r\n");
    }
    oversize_chunked.extend_from_slice(b"0\r\n\r\n");
    c.raw("uploadBlob chunked over the limit", oversize_chunked);
}

/// Missing, forged and misused credentials on the authenticated methods.
fn auth_cases(c: &mut Corpus, f: &Fixture) {
    let secret = JWT_SECRET.as_bytes();
    let service = Did::parse(&f.service_did).unwrap();
    let alice = Did::parse(&f.alice).unwrap();
    let now = Utc::now();
    let tokens = SessionTokens::new(secret, service.clone());
    let expired = tokens
        .issue(&alice, AccessScope::Access, "s", now - TimeDelta::days(3))
        .access_jwt;
    let future = tokens
        .issue(&alice, AccessScope::Access, "s", now + TimeDelta::days(3))
        .access_jwt;
    let unknown_session = tokens
        .issue(&alice, AccessScope::Access, "no-such-session", now)
        .access_jwt;
    let other_aud = SessionTokens::new(secret, Did::parse("did:web:other.test").unwrap())
        .issue(&alice, AccessScope::Access, "s", now)
        .access_jwt;
    let wrong_secret = SessionTokens::new(b"another secret entirely, 32 chars+", service)
        .issue(&alice, AccessScope::Access, "s", now)
        .access_jwt;
    let unknown_account = tokens
        .issue(
            &Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap(),
            AccessScope::Access,
            "s",
            now,
        )
        .access_jwt;
    // Alice's real token with its claims edited (the signature no longer fits).
    let mut parts: Vec<String> = f.alice_token.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 1_000_000);
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    let alg_none = unsigned_jwt(&json!({"alg": "none", "typ": "at+jwt"}), &claims, "");
    let alg_es256k = unsigned_jwt(&json!({"alg": "ES256K", "typ": "at+jwt"}), &claims, "c2ln");
    let bad: Vec<(&str, Auth)> = vec![
        ("no credentials", Auth::None),
        ("empty bearer", Auth::Header("Bearer ".into())),
        ("bearer junk", Auth::Bearer("junk".into())),
        ("bearer two dots", Auth::Bearer("..".into())),
        ("bearer huge", Auth::Bearer("a".repeat(20_000))),
        ("bearer non-base64", Auth::Bearer("@@@.###.$$$".into())),
        (
            "unknown scheme",
            Auth::Header(format!("Token {}", f.alice_token)),
        ),
        (
            "basic as user",
            Auth::Header(format!(
                "Basic {}",
                STANDARD.encode("alice.test:a long password")
            )),
        ),
        (
            "DPoP without proof",
            Auth::Header(format!("DPoP {}", f.alice_token)),
        ),
        ("expired", Auth::Bearer(expired)),
        ("issued in the future", Auth::Bearer(future)),
        ("unknown session", Auth::Bearer(unknown_session)),
        ("other audience", Auth::Bearer(other_aud)),
        ("wrong secret", Auth::Bearer(wrong_secret)),
        ("unknown account", Auth::Bearer(unknown_account)),
        ("tampered claims", Auth::Bearer(tampered)),
        ("alg none", Auth::Bearer(alg_none)),
        ("alg ES256K junk", Auth::Bearer(alg_es256k)),
        (
            "refresh token as access",
            Auth::Bearer(f.alice_refresh.clone()),
        ),
    ];
    let alice_s = &f.alice;
    let post = json!({"$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2026-11-25T12:00:00.000Z"});
    let create =
        json!({"repo": alice_s, "collection": "app.bsky.feed.post", "record": post}).to_string();
    let delete =
        json!({"repo": alice_s, "collection": "app.bsky.feed.post", "rkey": f.rkey}).to_string();
    let handle = json!({"handle": "mallory.test"}).to_string();
    let prefs = json!({"preferences": []}).to_string();
    for (name, auth) in &bad {
        c.get(
            format!("getSession with {name}"),
            "/xrpc/com.atproto.server.getSession",
            auth,
        );
        c.post_json(
            format!("createRecord with {name}"),
            "com.atproto.repo.createRecord",
            auth,
            &create,
        );
        c.post_json(
            format!("deleteRecord with {name}"),
            "com.atproto.repo.deleteRecord",
            auth,
            &delete,
        );
        c.post_json(
            format!("updateHandle with {name}"),
            "com.atproto.identity.updateHandle",
            auth,
            &handle,
        );
        c.post_json(
            format!("putPreferences with {name}"),
            "app.bsky.actor.putPreferences",
            auth,
            &prefs,
        );
        // deleteSession takes the refresh token: that one is not bad there.
        if !name.starts_with("refresh") {
            c.post_json(
                format!("deleteSession with {name}"),
                "com.atproto.server.deleteSession",
                auth,
                "",
            );
        }
        c.post_json(
            format!("deactivateAccount with {name}"),
            "com.atproto.server.deactivateAccount",
            auth,
            "{}",
        );
        c.post_json(
            format!("createAppPassword with {name}"),
            "com.atproto.server.createAppPassword",
            auth,
            r#"{"name":"x"}"#,
        );
        c.get(
            format!("getServiceAuth with {name}"),
            "/xrpc/com.atproto.server.getServiceAuth?aud=did:web:api.test",
            auth,
        );
        if !name.starts_with("refresh") {
            c.post_json(
                format!("refreshSession with {name}"),
                "com.atproto.server.refreshSession",
                auth,
                "",
            );
        }
    }
    // The access token where a refresh token belongs.
    c.post_json(
        "refreshSession with an access token",
        "com.atproto.server.refreshSession",
        &Auth::Bearer(f.alice_token.clone()),
        "",
    );
    // Bob's valid session on Alice's repository.
    let bob = Auth::Bearer(f.bob_token.clone());
    c.post_json(
        "bob creates in alice's repo",
        "com.atproto.repo.createRecord",
        &bob,
        &create,
    );
    c.post_json(
        "bob deletes alice's record",
        "com.atproto.repo.deleteRecord",
        &bob,
        &delete,
    );
    c.post_json("bob puts alice's record", "com.atproto.repo.putRecord", &bob, &json!({"repo": alice_s, "collection": "app.bsky.feed.post", "rkey": f.rkey, "record": post}).to_string());
    c.post_json("bob applies writes to alice's repo", "com.atproto.repo.applyWrites", &bob, &json!({"repo": alice_s, "writes": [{"$type": "com.atproto.repo.applyWrites#delete", "collection": "app.bsky.feed.post", "rkey": f.rkey}]}).to_string());
    c.post_json(
        "bob creates in alice's repo by handle",
        "com.atproto.repo.createRecord",
        &bob,
        &json!({"repo": "alice.test", "collection": "app.bsky.feed.post", "record": post})
            .to_string(),
    );
    c.post_json(
        "bob imports into alice's repo",
        "com.atproto.repo.importRepo",
        &bob,
        "",
    );
    c.get(
        "bob reads alice's account as an admin",
        &format!("/xrpc/com.atproto.admin.getAccountInfo?did={alice_s}"),
        &bob,
    );
    // Admin methods with a user's token, no credentials, a wrong password.
    let admin_calls: Vec<(&str, Option<String>)> = vec![
        (
            "com.atproto.admin.getAccountInfo",
            Some(format!("?did={alice_s}")),
        ),
        (
            "com.atproto.admin.getAccountInfos",
            Some(format!("?dids={alice_s}")),
        ),
        (
            "com.atproto.admin.getSubjectStatus",
            Some(format!("?did={alice_s}")),
        ),
        ("com.atproto.admin.getInviteCodes", Some(String::new())),
        ("com.atproto.admin.deleteAccount", None),
        ("com.atproto.admin.updateAccountEmail", None),
        ("com.atproto.admin.updateAccountHandle", None),
        ("com.atproto.admin.updateAccountPassword", None),
        ("com.atproto.admin.updateSubjectStatus", None),
        ("com.atproto.admin.disableInviteCodes", None),
        ("com.atproto.server.createInviteCode", None),
        ("com.atproto.server.createInviteCodes", None),
    ];
    let admin_body = json!({"did": alice_s, "account": alice_s, "email": "m@example.com", "handle": "mallory.test",
        "password": "new password here", "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": alice_s},
        "takedown": {"applied": true}, "useCount": 5, "codeCount": 1, "codes": [], "accounts": []}).to_string();
    let admin_auths: Vec<(&str, Auth)> = vec![
        ("a user's token", Auth::Bearer(f.alice_token.clone())),
        ("no credentials", Auth::None),
        (
            "a wrong admin password",
            Auth::Header(format!("Basic {}", STANDARD.encode("admin:wrong"))),
        ),
        (
            "admin's password for another user",
            Auth::Header(format!(
                "Basic {}",
                STANDARD.encode("alice:admin-password-for-tests-only")
            )),
        ),
        ("malformed basic", Auth::Header("Basic !!!notbase64".into())),
    ];
    for (nsid, query) in &admin_calls {
        for (who, auth) in &admin_auths {
            match query {
                Some(q) => c.get(
                    format!("{nsid} with {who}"),
                    &format!("/xrpc/{nsid}{q}"),
                    auth,
                ),
                None => c.post_json(format!("{nsid} with {who}"), nsid, auth, &admin_body),
            }
        }
    }
    c.get("metrics without credentials", "/metrics", &Auth::None);
    c.get(
        "metrics with a user's token",
        "/metrics",
        &Auth::Bearer(f.alice_token.clone()),
    );
}

/// Account and session methods with bad input (all unauthenticated).
fn account_cases(c: &mut Corpus, f: &Fixture) {
    let none = Auth::None;
    let base = json!({"handle": "carol.test", "email": "carol@example.com", "password": "a long password"});
    let mut variants: Vec<(String, Value)> = Vec::new();
    for handle in bad_handles() {
        let mut v = base.clone();
        v["handle"] = json!(handle);
        variants.push((format!("handle {handle:.30}"), v));
    }
    let fields: Vec<(&str, &str, Value)> = vec![
        ("taken handle", "handle", json!("alice.test")),
        (
            "handle outside the user domains",
            "handle",
            json!("carol.example.com"),
        ),
        ("handle number", "handle", json!(5)),
        ("no handle", "handle", Value::Null),
        ("email not an address", "email", json!("carol")),
        ("email number", "email", json!(5)),
        ("email taken", "email", json!("alice.test@example.com")),
        (
            "email huge",
            "email",
            json!(format!("{}@example.com", "c".repeat(10_000))),
        ),
        ("password number", "password", json!(5)),
        ("password huge", "password", json!("p".repeat(100_000))),
        ("did invalid", "did", json!("not a did")),
        ("did of another account", "did", json!(f.alice)),
        ("plcOp junk", "plcOp", json!({"type": "plc_operation"})),
        ("inviteCode junk", "inviteCode", json!(5)),
        ("recoveryKey junk", "recoveryKey", json!("did:key:zzz")),
    ];
    for (name, field, value) in fields {
        let mut v = base.clone();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = value;
        }
        variants.push((name.to_owned(), v));
    }
    for (name, body) in variants {
        c.post_json(
            format!("createAccount {name}"),
            "com.atproto.server.createAccount",
            &none,
            &body.to_string(),
        );
    }
    c.post_json(
        "createAccount not json",
        "com.atproto.server.createAccount",
        &none,
        "{",
    );
    c.post_json(
        "createAccount empty",
        "com.atproto.server.createAccount",
        &none,
        "{}",
    );
    let sessions: Vec<(&str, Value)> = vec![
        (
            "wrong password",
            json!({"identifier": "alice.test", "password": "wrong password"}),
        ),
        (
            "unknown handle",
            json!({"identifier": "nobody.test", "password": "a long password"}),
        ),
        (
            "unknown did",
            json!({"identifier": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "password": "a long password"}),
        ),
        (
            "email, wrong password",
            json!({"identifier": "alice@example.com", "password": "nope"}),
        ),
        (
            "identifier number",
            json!({"identifier": 5, "password": "a long password"}),
        ),
        (
            "password null",
            json!({"identifier": "alice.test", "password": null}),
        ),
        ("no password", json!({"identifier": "alice.test"})),
        ("no identifier", json!({"password": "a long password"})),
        (
            "identifier huge",
            json!({"identifier": "a".repeat(50_000), "password": "x"}),
        ),
        (
            "password huge",
            json!({"identifier": "alice.test", "password": "x".repeat(100_000)}),
        ),
        (
            "identifier with NUL",
            json!({"identifier": "alice.test\u{0}", "password": "a long password"}),
        ),
        (
            "authFactorToken junk",
            json!({"identifier": "alice.test", "password": "wrong", "authFactorToken": 5}),
        ),
    ];
    for (name, body) in sessions {
        c.post_json(
            format!("createSession {name}"),
            "com.atproto.server.createSession",
            &none,
            &body.to_string(),
        );
    }
    let misc: Vec<(&str, &str, String)> = vec![
        (
            "resetPassword junk token",
            "com.atproto.server.resetPassword",
            json!({"token": "AAAAA-BBBBB", "password": "new password"}).to_string(),
        ),
        (
            "resetPassword empty",
            "com.atproto.server.resetPassword",
            "{}".to_owned(),
        ),
        (
            "requestPasswordReset bad email",
            "com.atproto.server.requestPasswordReset",
            json!({"email": 5}).to_string(),
        ),
        (
            "confirmEmail without a session",
            "com.atproto.server.confirmEmail",
            json!({"email": "alice@example.com", "token": "x"}).to_string(),
        ),
        (
            "deleteAccount wrong token",
            "com.atproto.server.deleteAccount",
            json!({"did": f.alice, "password": "a long password", "token": "AAAAA-BBBBB"})
                .to_string(),
        ),
        (
            "deleteAccount wrong password",
            "com.atproto.server.deleteAccount",
            json!({"did": f.alice, "password": "nope", "token": "AAAAA-BBBBB"}).to_string(),
        ),
        (
            "deleteAccount bad did",
            "com.atproto.server.deleteAccount",
            json!({"did": "nope", "password": "x", "token": "x"}).to_string(),
        ),
        (
            "submitPlcOperation without a session",
            "com.atproto.identity.submitPlcOperation",
            json!({"operation": {}}).to_string(),
        ),
        (
            "importRepo without a session",
            "com.atproto.repo.importRepo",
            String::new(),
        ),
        (
            "putPreferences without a session",
            "app.bsky.actor.putPreferences",
            json!({"preferences": []}).to_string(),
        ),
    ];
    for (name, nsid, body) in misc {
        c.post_json(name, nsid, &none, &body);
    }
    // Signed-in calls with bad bodies.
    let auth = Auth::Bearer(f.alice_token.clone());
    let signed_in: Vec<(&str, &str, String)> = vec![
        (
            "updateHandle invalid",
            "com.atproto.identity.updateHandle",
            json!({"handle": "-bad-"}).to_string(),
        ),
        (
            "updateHandle number",
            "com.atproto.identity.updateHandle",
            json!({"handle": 7}).to_string(),
        ),
        (
            "updateHandle taken",
            "com.atproto.identity.updateHandle",
            json!({"handle": "bob.test"}).to_string(),
        ),
        (
            "updateHandle foreign domain",
            "com.atproto.identity.updateHandle",
            json!({"handle": "alice.example.com"}).to_string(),
        ),
        (
            "putPreferences not a list",
            "app.bsky.actor.putPreferences",
            json!({"preferences": {}}).to_string(),
        ),
        (
            "putPreferences item without $type",
            "app.bsky.actor.putPreferences",
            json!({"preferences": [{"x": 1}]}).to_string(),
        ),
        (
            "putPreferences foreign namespace",
            "app.bsky.actor.putPreferences",
            json!({"preferences": [{"$type": "com.example.pref"}]}).to_string(),
        ),
        (
            "createAppPassword no name",
            "com.atproto.server.createAppPassword",
            "{}".to_owned(),
        ),
        (
            "createAppPassword name huge",
            "com.atproto.server.createAppPassword",
            json!({"name": "n".repeat(10_000)}).to_string(),
        ),
        (
            "revokeAppPassword unknown",
            "com.atproto.server.revokeAppPassword",
            json!({"name": 5}).to_string(),
        ),
        (
            "updateEmail invalid",
            "com.atproto.server.updateEmail",
            json!({"email": "not-an-email"}).to_string(),
        ),
        (
            "confirmEmail wrong token",
            "com.atproto.server.confirmEmail",
            json!({"email": "alice@example.com", "token": "AAAAA-BBBBB"}).to_string(),
        ),
        (
            "signPlcOperation wrong token",
            "com.atproto.identity.signPlcOperation",
            json!({"token": "AAAAA-BBBBB"}).to_string(),
        ),
        (
            "submitPlcOperation junk",
            "com.atproto.identity.submitPlcOperation",
            json!({"operation": {"type": "plc_operation"}}).to_string(),
        ),
        (
            "importRepo junk CAR",
            "com.atproto.repo.importRepo",
            "not a car".to_owned(),
        ),
        (
            "deactivateAccount deleteAfter junk",
            "com.atproto.server.deactivateAccount",
            json!({"deleteAfter": "tomorrow"}).to_string(),
        ),
    ];
    for (name, nsid, body) in signed_in {
        let ct = if nsid.ends_with("importRepo") {
            "application/vnd.ipld.car"
        } else {
            "application/json"
        };
        c.post(name, nsid, &auth, Some(ct), body.as_bytes());
    }
    c.get(
        "getServiceAuth bad aud",
        "/xrpc/com.atproto.server.getServiceAuth?aud=nope",
        &auth,
    );
    c.get(
        "getServiceAuth bad lxm",
        "/xrpc/com.atproto.server.getServiceAuth?aud=did:web:api.test&lxm=..",
        &auth,
    );
    c.get(
        "getServiceAuth huge exp",
        "/xrpc/com.atproto.server.getServiceAuth?aud=did:web:api.test&exp=99999999999",
        &auth,
    );
    c.get(
        "getServiceAuth exp not a number",
        "/xrpc/com.atproto.server.getServiceAuth?aud=did:web:api.test&exp=soon",
        &auth,
    );
    protocol_cases(c);
}

/// Raw protocol abuse: malformed request lines and headers.
fn protocol_cases(c: &mut Corpus) {
    let first = c.cases.len();
    let host = c.host.clone();
    c.raw("header without a colon", format!("GET /xrpc/com.atproto.server.describeServer HTTP/1.1\r\nHost: {host}\r\nBroken header\r\nConnection: close\r\n\r\n").into_bytes());
    c.raw("content-length not a number", format!("POST /xrpc/com.atproto.server.createSession HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: lots\r\nConnection: close\r\n\r\n{{}}").into_bytes());
    c.raw("two content-lengths", format!("POST /xrpc/com.atproto.server.createSession HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{{}}").into_bytes());
    c.raw("too many headers", {
        let mut r =
            format!("GET /xrpc/com.atproto.server.describeServer HTTP/1.1\r\nHost: {host}\r\n");
        for i in 0..500 {
            let _ = write!(r, "X-H{i}: v\r\n");
        }
        r.push_str("Connection: close\r\n\r\n");
        r.into_bytes()
    });
    c.raw("request line junk", b"GARBAGE\r\n\r\n".to_vec());
    c.raw(
        "unknown HTTP version",
        format!("GET / HTTP/9.9\r\nHost: {host}\r\n\r\n").into_bytes(),
    );
    for case in &mut c.cases[first..] {
        case.protocol = true;
    }
}

async fn fixture(server: &TestServer) -> Fixture {
    let c = Client { server };
    let (alice, alice_token) = sign_up(&c, "alice.test").await;
    let (_, bob_token) = sign_up(&c, "bob.test").await;
    let session = c
        .ok_post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice.test", "password": "a long password"}),
        )
        .await;
    let created = c
        .ok_post(
            "com.atproto.repo.createRecord",
            Some(&alice_token),
            json!({"repo": alice, "collection": "app.bsky.feed.post",
                   "record": {"$type": "app.bsky.feed.post", "text": "kept", "createdAt": "2026-11-25T12:00:00.000Z"}}),
        )
        .await;
    let blob = server
        .http
        .post(server.url("/xrpc/com.atproto.repo.uploadBlob"))
        .bearer_auth(&alice_token)
        .header("content-type", "image/png")
        .body(b"\x89PNG\r\n\x1a\nnot really a picture".to_vec())
        .send()
        .await
        .unwrap();
    let blob = Client::ok(blob).await;
    let describe = c
        .ok_get("com.atproto.server.describeServer", None, &[])
        .await;
    Fixture {
        alice: alice.clone(),
        alice_token,
        alice_refresh: session["refreshJwt"].as_str().unwrap().to_owned(),
        bob_token,
        rkey: rkey_of(&created),
        record_cid: created["cid"].as_str().unwrap().to_owned(),
        blob_cid: blob["blob"]["ref"]["$link"].as_str().unwrap().to_owned(),
        service_did: describe["did"].as_str().unwrap().to_owned(),
    }
}

async fn malformed_requests(test: &str, db: Db) {
    let plc = TestPlcDirectory::start().await;
    let db_url = match db {
        Db::Postgres => match aurora_storage_testkit::postgres::database(test) {
            Some(url) => Some(url),
            None => return,
        },
        _ => None,
    };
    let server_db = db_url.clone().map_or(db, Db::Url);
    let Some(server) = server_with(test, server_db, &plc, |c| {
        c.jwt_secret = Some(aurora_server::config::Secret::new(JWT_SECRET));
        c.blob_max_bytes = BLOB_MAX as u64;
        // Each case must reach its handler: the limits have their own test.
        c.rate_limits.enabled = false;
    })
    .await
    else {
        return;
    };
    let f = fixture(&server).await;
    let mut corpus = Corpus {
        host: server.addr.to_string(),
        cases: Vec::new(),
    };
    query_cases(&mut corpus, &f);
    record_write_cases(&mut corpus, &f);
    upload_cases(&mut corpus, &f);
    auth_cases(&mut corpus, &f);
    account_cases(&mut corpus, &f);
    let count = corpus.cases.len();
    assert!(count >= 500, "the corpus has {count} cases");

    let db = connect(&db_url.unwrap_or_else(|| sqlite_url(&server.data_dir))).await;
    let before = dump(&db).await;

    let mut failures = Vec::new();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for case in &corpus.cases {
        match send(server.addr, case).await {
            Ok(answer) => {
                *by_status.entry(answer.status).or_default() += 1;
                if let Some(why) = judge(case, &answer) {
                    failures.push(format!("{}: {why}", case.name));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    let after = dump(&db).await;
    let rows: usize = before.values().map(Vec::len).sum();
    println!(
        "{test}: {count} cases; answers by status: {by_status:?}; database compared: {} tables, {rows} rows",
        before.len()
    );
    assert!(
        before.len() > 10 && rows > 10,
        "the dump holds the data: {before:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} cases were not refused properly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let changed = differences(&before, &after);
    assert!(
        changed.is_empty(),
        "the database changed:\n{}",
        changed.join("\n")
    );

    // And the server still serves Alice's data as before.
    let c = Client { server: &server };
    let record = c
        .ok_get(
            "com.atproto.repo.getRecord",
            None,
            &[
                ("repo", &f.alice),
                ("collection", "app.bsky.feed.post"),
                ("rkey", &f.rkey),
            ],
        )
        .await;
    assert_eq!(record["cid"], f.record_cid.as_str());
    let latest = c
        .ok_get(
            "com.atproto.sync.getLatestCommit",
            None,
            &[("did", &f.alice)],
        )
        .await;
    assert_ne!(latest["cid"], Value::Null);
}

#[tokio::test]
async fn malformed_requests_are_refused_and_change_nothing_on_sqlite() {
    malformed_requests("malformed_requests_sqlite", Db::Sqlite).await;
}

#[tokio::test]
async fn malformed_requests_are_refused_and_change_nothing_on_postgres() {
    malformed_requests("malformed_requests_postgres", Db::Postgres).await;
}
