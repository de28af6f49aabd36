use std::path::PathBuf;

use serde_json::{Value, json};

use super::check::Checker;
use super::known::KNOWN;
use super::schema::{
    Arr, Catalog, Def, Doc, Format, Int, KeyType, Object, Prop, Str, Type, object,
};
use super::*;

const TID: &str = "3jzfcijpj2z2a";
const CID: &str = "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq";
const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const NOW: &str = "2026-11-25T12:00:00.000Z";

fn run(
    collection: &str,
    rkey: &str,
    record: &Value,
    validate: Option<bool>,
) -> Result<ValidationStatus, String> {
    let collection = Nsid::parse(collection).unwrap();
    let rkey = RecordKey::parse(rkey).unwrap();
    validate_record(&collection, &rkey, record, validate).map_err(|e| e.message)
}

/// Asserts the record is valid for the collection (validate unset and true).
fn valid(collection: &str, rkey: &str, record: &Value) {
    for validate in [None, Some(true)] {
        assert_eq!(
            run(collection, rkey, record, validate),
            Ok(ValidationStatus::Valid),
            "{record}"
        );
    }
}

/// The message a record is refused with (validate unset; the same with true).
fn refused(collection: &str, rkey: &str, record: &Value) -> String {
    let message = run(collection, rkey, record, None).expect_err("accepted an invalid record");
    assert_eq!(
        run(collection, rkey, record, Some(true)),
        Err(message.clone())
    );
    message
}

fn strong_ref() -> Value {
    json!({"uri": format!("at://{DID}/app.bsky.feed.post/{TID}"), "cid": CID})
}

fn image_blob(mime: &str, size: u64) -> Value {
    json!({"$type": "blob", "ref": {"$link": CID}, "mimeType": mime, "size": size})
}

fn post(text: &str) -> Value {
    json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": NOW})
}

/// `base` with `key` set to `value`.
fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

/// `base` without `key`.
fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

// ------------------------------------------------------------- app.bsky

#[test]
fn minimal_and_full_posts_are_valid() {
    valid("app.bsky.feed.post", TID, &post("hello"));
    let full = json!({
        "$type": "app.bsky.feed.post",
        "text": "hello @alice.test #rust",
        "facets": [
            {"index": {"byteStart": 6, "byteEnd": 17},
             "features": [{"$type": "app.bsky.richtext.facet#mention", "did": DID}]},
            {"index": {"byteStart": 18, "byteEnd": 23},
             "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "rust"}]},
        ],
        "reply": {"root": strong_ref(), "parent": strong_ref()},
        "embed": {
            "$type": "app.bsky.embed.images",
            "images": [{"image": image_blob("image/png", 1234), "alt": "a cat",
                        "aspectRatio": {"width": 4, "height": 3}}],
        },
        "langs": ["en", "pt-BR"],
        "labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]},
        "tags": ["one", "two"],
        "createdAt": NOW,
        "somethingNew": {"a client may add": "fields the lexicon does not name"},
    });
    valid("app.bsky.feed.post", TID, &full);
}

#[test]
fn record_with_media_and_external_embeds_are_valid() {
    let quote = json!({
        "$type": "app.bsky.embed.recordWithMedia",
        "record": {"$type": "app.bsky.embed.record", "record": strong_ref()},
        "media": {"$type": "app.bsky.embed.external", "external": {
            "uri": "https://example.com/a", "title": "A", "description": "",
            "thumb": image_blob("image/webp", 999),
        }},
    });
    valid(
        "app.bsky.feed.post",
        TID,
        &with(post("look"), "embed", quote),
    );
}

#[test]
fn likes_reposts_follows_blocks_are_valid() {
    let like = json!({"$type": "app.bsky.feed.like", "subject": strong_ref(), "createdAt": NOW});
    valid("app.bsky.feed.like", TID, &like);
    let repost =
        json!({"$type": "app.bsky.feed.repost", "subject": strong_ref(), "createdAt": NOW});
    valid("app.bsky.feed.repost", TID, &repost);
    let follow = json!({"$type": "app.bsky.graph.follow", "subject": DID, "createdAt": NOW});
    valid("app.bsky.graph.follow", TID, &follow);
    let block = json!({"$type": "app.bsky.graph.block", "subject": DID, "createdAt": NOW});
    valid("app.bsky.graph.block", TID, &block);
}

#[test]
fn profile_is_literal_self() {
    let profile = json!({
        "$type": "app.bsky.actor.profile",
        "displayName": "Alice",
        "description": "hi",
        "avatar": image_blob("image/jpeg", 20_000),
        "pinnedPost": strong_ref(),
    });
    valid("app.bsky.actor.profile", "self", &profile);
    // Every property of a profile is optional.
    valid(
        "app.bsky.actor.profile",
        "self",
        &json!({"$type": "app.bsky.actor.profile"}),
    );
    assert_eq!(
        refused("app.bsky.actor.profile", TID, &profile),
        format!("Invalid record key for app.bsky.actor.profile: must be \"self\" (got \"{TID}\")")
    );
}

#[test]
fn too_long_text_is_refused_by_graphemes_and_bytes() {
    assert_eq!(
        refused("app.bsky.feed.post", TID, &post(&"a".repeat(301))),
        "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes"
    );
    // 300 graphemes of two code points each: 600 chars, but 300 graphemes.
    valid("app.bsky.feed.post", TID, &post(&"e\u{301}".repeat(300)));
    // 121 family emoji (25 bytes each) are 121 graphemes but 3,025 bytes.
    assert_eq!(
        refused("app.bsky.feed.post", TID, &post(&"👨‍👩‍👧‍👦".repeat(121))),
        "Invalid app.bsky.feed.post record: Record/text must not be longer than 3000 characters"
    );
}

#[test]
fn wrong_types_are_refused() {
    let cases = [
        (
            with(post("x"), "text", json!(42)),
            "Record/text must be a string",
        ),
        (
            with(post("x"), "langs", json!("en")),
            "Record/langs must be an array",
        ),
        (
            with(post("x"), "reply", json!([])),
            "Record/reply must be an object",
        ),
        (
            with(
                post("x"),
                "facets",
                json!([{"index": {"byteStart": "0", "byteEnd": 1}, "features": []}]),
            ),
            "Record/facets/0/index/byteStart must be an integer",
        ),
        (
            with(
                post("x"),
                "facets",
                json!([{"index": {"byteStart": -1, "byteEnd": 1}, "features": []}]),
            ),
            "Record/facets/0/index/byteStart can not be less than 0",
        ),
        (
            with(post("x"), "langs", json!(["en", "fr", "de", "es"])),
            "Record/langs must not have more than 3 elements",
        ),
        (
            with(post("x"), "langs", json!(["english!"])),
            "Record/langs/0 must be a well-formed BCP 47 language tag",
        ),
        (
            with(
                post("x"),
                "reply",
                json!({"root": strong_ref(), "parent": {"uri": "nope", "cid": CID}}),
            ),
            "Record/reply/parent/uri must be a valid at-uri",
        ),
        (
            with(
                post("x"),
                "reply",
                json!({"root": strong_ref(), "parent": {"uri": strong_ref()["uri"], "cid": "bafy"}}),
            ),
            "Record/reply/parent/cid must be a cid string",
        ),
    ];
    for (record, message) in cases {
        assert_eq!(
            refused("app.bsky.feed.post", TID, &record),
            format!("Invalid app.bsky.feed.post record: {message}")
        );
    }
    let follow =
        json!({"$type": "app.bsky.graph.follow", "subject": "alice.test", "createdAt": NOW});
    assert_eq!(
        refused("app.bsky.graph.follow", TID, &follow),
        "Invalid app.bsky.graph.follow record: Record/subject must be a valid did"
    );
}

#[test]
fn missing_required_fields_are_refused() {
    assert_eq!(
        refused("app.bsky.feed.post", TID, &without(post("x"), "createdAt")),
        "Invalid app.bsky.feed.post record: Record must have the property \"createdAt\""
    );
    let like = json!({"$type": "app.bsky.feed.like", "subject": {"uri": strong_ref()["uri"]}, "createdAt": NOW});
    assert_eq!(
        refused("app.bsky.feed.like", TID, &like),
        "Invalid app.bsky.feed.like record: Record/subject must have the property \"cid\""
    );
    let images = json!({"$type": "app.bsky.embed.images", "images": [{"image": image_blob("image/png", 1)}]});
    assert_eq!(
        refused("app.bsky.feed.post", TID, &with(post("x"), "embed", images)),
        "Invalid app.bsky.feed.post record: Record/embed/images/0 must have the property \"alt\""
    );
    // null is no value: a non-nullable property may not be null.
    assert_eq!(
        refused(
            "app.bsky.feed.post",
            TID,
            &with(post("x"), "text", Value::Null)
        ),
        "Invalid app.bsky.feed.post record: Record/text must be a string"
    );
}

#[test]
fn bad_datetimes_are_refused() {
    for bad in [
        "2026-11-25",
        "2026-11-25 12:00:00Z",
        "2026-11-25T12:00:00",
        "yesterday",
        "2026-13-01T00:00:00Z",
    ] {
        assert_eq!(
            refused(
                "app.bsky.feed.post",
                TID,
                &with(post("x"), "createdAt", json!(bad))
            ),
            "Invalid app.bsky.feed.post record: Record/createdAt must be a valid atproto datetime (both RFC-3339 and ISO-8601)",
            "{bad}"
        );
    }
    valid(
        "app.bsky.feed.post",
        TID,
        &with(post("x"), "createdAt", json!("2026-11-25T12:00:00+01:00")),
    );
}

#[test]
fn record_key_must_fit_the_key_type() {
    for rkey in ["self", "3jzfcijpj2z2", "hello-world"] {
        assert_eq!(
            refused("app.bsky.feed.post", rkey, &post("x")),
            format!(
                "Invalid record key for app.bsky.feed.post: must be a valid TID (got \"{rkey}\")"
            )
        );
    }
    // `any`: a feed generator may be named freely.
    let generator = json!({"$type": "app.bsky.feed.generator", "did": "did:web:feeds.example.com",
                           "displayName": "Cats", "createdAt": NOW});
    valid("app.bsky.feed.generator", "cats-only", &generator);
    // validate=false skips the key check too, as the reference does.
    assert_eq!(
        run("app.bsky.feed.post", "self", &post("x"), Some(false)),
        Ok(ValidationStatus::Unknown)
    );
}

#[test]
fn open_unions_accept_unknown_types_and_require_type() {
    let embed = json!({"$type": "com.example.embed.poll", "options": ["a", "b"]});
    valid("app.bsky.feed.post", TID, &with(post("x"), "embed", embed));
    // A listed type may be named with an explicit #main.
    let embed = json!({"$type": "app.bsky.embed.record#main", "record": strong_ref()});
    valid("app.bsky.feed.post", TID, &with(post("x"), "embed", embed));
    // A listed type is checked.
    let embed = json!({"$type": "app.bsky.embed.record", "record": {"uri": 1}});
    assert_eq!(
        refused("app.bsky.feed.post", TID, &with(post("x"), "embed", embed)),
        "Invalid app.bsky.feed.post record: Record/embed/record/uri must be a string"
    );
    assert_eq!(
        refused(
            "app.bsky.feed.post",
            TID,
            &with(post("x"), "embed", json!({"images": []}))
        ),
        "Invalid app.bsky.feed.post record: Record/embed must be an object which includes the \"$type\" property"
    );
}

#[test]
fn closed_unions_refuse_unlisted_types() {
    let catalog = Catalog::new([Doc::new("com.example.shape")
        .record(
            KeyType::Any,
            object().req(
                "shape",
                Type::Union {
                    refs: vec!["#circle".to_owned(), "com.example.square".to_owned()],
                    closed: true,
                },
            ),
        )
        .def("circle", object().req("r", super::schema::integer()))]);
    let (_, schema) = catalog.record("com.example.shape").unwrap();
    let check = |v: Value| Checker::new(&catalog).object("Record", schema, &v);
    assert_eq!(
        check(json!({"shape": {"$type": "com.example.shape#circle", "r": 1}})),
        Ok(())
    );
    assert_eq!(
        check(json!({"shape": {"$type": "com.example.triangle", "a": 1}})),
        Err(
            "Record/shape $type must be one of com.example.shape#circle, com.example.square"
                .to_owned()
        )
    );
    // A listed reference that names no definition is a schema defect, reported.
    assert_eq!(
        check(json!({"shape": {"$type": "com.example.square"}})),
        Err("Lexicon definition not found: com.example.square#main".to_owned())
    );
}

#[test]
fn blobs_are_checked_against_accept_and_max_size() {
    let profile = |avatar: Value| json!({"$type": "app.bsky.actor.profile", "avatar": avatar});
    assert_eq!(
        refused(
            "app.bsky.actor.profile",
            "self",
            &profile(image_blob("image/gif", 10))
        ),
        "Invalid app.bsky.actor.profile record: Record/avatar has mimeType image/gif, which is not one of (image/png|image/jpeg)"
    );
    assert_eq!(
        refused(
            "app.bsky.actor.profile",
            "self",
            &profile(image_blob("image/png", 1_000_001))
        ),
        "Invalid app.bsky.actor.profile record: Record/avatar must not be larger than 1000000 bytes"
    );
    // `image/*` takes any image type.
    let images = json!({"$type": "app.bsky.embed.images",
                        "images": [{"image": image_blob("image/avif", 10), "alt": ""}]});
    valid("app.bsky.feed.post", TID, &with(post("x"), "embed", images));
    let not_blobs = [
        json!("bafy"),
        json!({"cid": CID, "mimeType": "image/png"}), // a legacy blob ref
        json!({"$type": "blob", "ref": {"$link": "nope"}, "mimeType": "image/png", "size": 1}),
        json!({"$type": "blob", "ref": {"$link": CID}, "size": 1}),
    ];
    for avatar in not_blobs {
        assert_eq!(
            refused("app.bsky.actor.profile", "self", &profile(avatar.clone())),
            "Invalid app.bsky.actor.profile record: Record/avatar should be a blob ref",
            "{avatar}"
        );
    }
}

// ------------------------------------------------- $type and the flag

#[test]
fn type_must_match_the_collection_whatever_the_flag() {
    let like = json!({"$type": "app.bsky.feed.like", "subject": strong_ref(), "createdAt": NOW});
    for validate in [None, Some(true), Some(false)] {
        assert_eq!(
            run("app.bsky.feed.post", TID, &like, validate),
            Err("Invalid $type: expected app.bsky.feed.post, got app.bsky.feed.like".to_owned())
        );
    }
    assert_eq!(
        run(
            "app.bsky.feed.post",
            TID,
            &with(post("x"), "$type", json!(7)),
            None
        ),
        Err("Invalid $type: expected app.bsky.feed.post, got 7".to_owned())
    );
    assert_eq!(
        run(
            "app.bsky.feed.post",
            TID,
            &json!(["not", "an", "object"]),
            Some(false)
        ),
        Err("Record must be an object".to_owned())
    );
    // No $type: the record is taken to be of the collection's type.
    valid("app.bsky.feed.post", TID, &without(post("x"), "$type"));
}

#[test]
fn unknown_lexicons_depend_on_the_flag() {
    let record = json!({"$type": "com.example.thing", "anything": [1, 2, 3]});
    assert_eq!(
        run("com.example.thing", TID, &record, None),
        Ok(ValidationStatus::Unknown)
    );
    assert_eq!(
        run("com.example.thing", TID, &record, Some(false)),
        Ok(ValidationStatus::Unknown)
    );
    assert_eq!(
        run("com.example.thing", TID, &record, Some(true)),
        Err("Unknown lexicon type: com.example.thing".to_owned())
    );
    // A namespace the PDS knows, but a record type it does not.
    let record = json!({"$type": "app.bsky.feed.bookmark"});
    assert_eq!(
        run("app.bsky.feed.bookmark", TID, &record, None),
        Ok(ValidationStatus::Unknown)
    );
}

#[test]
fn validate_false_skips_the_schema() {
    let bad = with(post("x"), "text", json!(42));
    assert_eq!(
        run("app.bsky.feed.post", TID, &bad, Some(false)),
        Ok(ValidationStatus::Unknown)
    );
}

// ------------------------------------------------ com.atproto, chat.bsky

#[test]
fn com_atproto_lexicon_schema_is_keyed_by_nsid() {
    let record = json!({"$type": "com.atproto.lexicon.schema", "lexicon": 1, "id": "com.example.thing", "defs": {}});
    valid("com.atproto.lexicon.schema", "com.example.thing", &record);
    assert_eq!(
        refused("com.atproto.lexicon.schema", TID, &record),
        format!(
            "Invalid record key for com.atproto.lexicon.schema: must be a valid NSID (got \"{TID}\")"
        )
    );
    assert_eq!(
        refused(
            "com.atproto.lexicon.schema",
            "com.example.thing",
            &with(record, "lexicon", json!("one"))
        ),
        "Invalid com.atproto.lexicon.schema record: Record/lexicon must be an integer"
    );
}

#[test]
fn chat_bsky_declaration() {
    let declaration = json!({"$type": "chat.bsky.actor.declaration", "allowIncoming": "following"});
    valid("chat.bsky.actor.declaration", "self", &declaration);
    // knownValues are advice, not a limit.
    valid(
        "chat.bsky.actor.declaration",
        "self",
        &with(
            declaration.clone(),
            "allowIncoming",
            json!("friends-of-friends"),
        ),
    );
    assert_eq!(
        refused(
            "chat.bsky.actor.declaration",
            "self",
            &json!({"$type": "chat.bsky.actor.declaration"})
        ),
        "Invalid chat.bsky.actor.declaration record: Record must have the property \"allowIncoming\""
    );
    assert_eq!(
        refused("chat.bsky.actor.declaration", "other", &declaration),
        "Invalid record key for chat.bsky.actor.declaration: must be \"self\" (got \"other\")"
    );
}

#[test]
fn more_record_types() {
    let threadgate = json!({
        "$type": "app.bsky.feed.threadgate",
        "post": strong_ref()["uri"],
        "allow": [{"$type": "app.bsky.feed.threadgate#mentionRule"},
                  {"$type": "app.bsky.feed.threadgate#listRule", "list": format!("at://{DID}/app.bsky.graph.list/{TID}")}],
        "createdAt": NOW,
    });
    valid("app.bsky.feed.threadgate", TID, &threadgate);
    let list = json!({"$type": "app.bsky.graph.list", "purpose": "app.bsky.graph.defs#curatelist",
                      "name": "Friends", "createdAt": NOW});
    valid("app.bsky.graph.list", TID, &list);
    assert_eq!(
        refused("app.bsky.graph.list", TID, &with(list, "name", json!(""))),
        "Invalid app.bsky.graph.list record: Record/name must not be shorter than 1 characters"
    );
    let labeler = json!({"$type": "app.bsky.labeler.service", "createdAt": NOW, "policies": {
        "labelValues": ["spoiler"],
        "labelValueDefinitions": [{"identifier": "spoiler", "severity": "inform", "blurs": "content",
            "locales": [{"lang": "en", "name": "Spoiler", "description": "Spoils it"}]}],
    }, "subjectCollections": ["app.bsky.feed.post"]});
    valid("app.bsky.labeler.service", "self", &labeler);
    let status = json!({"$type": "app.bsky.actor.status", "status": "app.bsky.actor.status#live",
                        "durationMinutes": 0, "createdAt": NOW});
    assert_eq!(
        refused("app.bsky.actor.status", "self", &status),
        "Invalid app.bsky.actor.status record: Record/durationMinutes can not be less than 1"
    );
}

#[test]
fn known_catalog_is_complete() {
    assert_eq!(KNOWN.dangling(), Vec::<String>::new());
    assert_eq!(
        KNOWN.record_types(),
        [
            "app.bsky.actor.profile",
            "app.bsky.actor.status",
            "app.bsky.feed.generator",
            "app.bsky.feed.like",
            "app.bsky.feed.post",
            "app.bsky.feed.postgate",
            "app.bsky.feed.repost",
            "app.bsky.feed.threadgate",
            "app.bsky.graph.block",
            "app.bsky.graph.follow",
            "app.bsky.graph.list",
            "app.bsky.graph.listblock",
            "app.bsky.graph.listitem",
            "app.bsky.graph.starterpack",
            "app.bsky.graph.verification",
            "app.bsky.labeler.service",
            "app.bsky.notification.declaration",
            "chat.bsky.actor.declaration",
            "com.atproto.lexicon.schema",
        ]
    );
}

#[test]
fn recursion_is_bounded() {
    // A schema that refers to itself, and data nested deeper than the bound.
    let catalog = Catalog::new([Doc::new("com.example.chain")
        .record(
            KeyType::Any,
            object().opt("next", super::schema::r("#link")),
        )
        .def("link", object().opt("next", super::schema::r("#link")))]);
    let (_, schema) = catalog.record("com.example.chain").unwrap();
    let nest = |levels: usize| (0..levels).fold(json!({}), |inner, _| json!({ "next": inner }));
    assert_eq!(
        Checker::new(&catalog).object("Record", schema, &nest(200)),
        Ok(())
    );
    let message = Checker::new(&catalog)
        .object("Record", schema, &nest(300))
        .unwrap_err();
    assert!(message.ends_with("is nested too deeply"), "{message}");
}

// ------------------------------------------------- interop test vectors

fn interop(rel: &str) -> Option<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/interop-tests");
    if !dir.is_dir() {
        eprintln!("SKIP: interop vectors not found at {}", dir.display());
        return None;
    }
    let text = std::fs::read_to_string(dir.join(rel)).unwrap();
    Some(serde_json::from_str(&text).unwrap())
}

/// A lexicon document's JSON as the schema model (enough for the vectors).
fn doc_from_json(doc: &Value) -> Doc {
    let id = doc["id"].as_str().unwrap();
    let mut out = Doc::new(id);
    for (name, def) in doc["defs"].as_object().unwrap() {
        let parsed = match def["type"].as_str().unwrap() {
            "record" => Def::Record {
                key: KeyType::parse(def["key"].as_str().unwrap()).unwrap(),
                record: object_from_json(&def["record"]),
            },
            "token" => Def::Token,
            _ => Def::Type(type_from_json(def)),
        };
        out.defs.push((name.clone(), parsed));
    }
    out
}

fn object_from_json(o: &Value) -> Object {
    let names = |key: &str| -> Vec<&str> {
        o[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let (required, nullable) = (names("required"), names("nullable"));
    let props = o["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, ty)| Prop {
                    name: name.clone(),
                    ty: type_from_json(ty),
                    required: required.contains(&name.as_str()),
                    nullable: nullable.contains(&name.as_str()),
                })
                .collect()
        })
        .unwrap_or_default();
    Object { props }
}

fn type_from_json(t: &Value) -> Type {
    let usize_of = |k: &str| t[k].as_u64().map(|n| usize::try_from(n).unwrap());
    let strings = |k: &str| -> Option<Vec<String>> {
        t[k].as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
    };
    match t["type"].as_str().unwrap() {
        "boolean" => Type::Boolean {
            konst: t["const"].as_bool(),
        },
        "integer" => Type::Integer(Int {
            minimum: t["minimum"].as_i64(),
            maximum: t["maximum"].as_i64(),
            enumeration: t["enum"]
                .as_array()
                .map(|a| a.iter().map(|n| n.as_i64().unwrap()).collect()),
            konst: t["const"].as_i64(),
        }),
        "string" => Type::String(Str {
            min_len: usize_of("minLength"),
            max_len: usize_of("maxLength"),
            min_graphemes: usize_of("minGraphemes"),
            max_graphemes: usize_of("maxGraphemes"),
            format: t["format"].as_str().map(|f| Format::parse(f).unwrap()),
            enumeration: strings("enum"),
            konst: t["const"].as_str().map(str::to_owned),
        }),
        "bytes" => Type::Bytes {
            min_len: usize_of("minLength"),
            max_len: usize_of("maxLength"),
        },
        "cid-link" => Type::CidLink,
        "blob" => Type::Blob {
            accept: strings("accept").unwrap_or_default(),
            max_size: t["maxSize"].as_u64(),
        },
        "array" => Type::Array(Box::new(Arr {
            items: type_from_json(&t["items"]),
            min_len: usize_of("minLength"),
            max_len: usize_of("maxLength"),
        })),
        "object" => Type::Object(object_from_json(t)),
        "ref" => Type::Ref(t["ref"].as_str().unwrap().to_owned()),
        "union" => Type::Union {
            refs: strings("refs").unwrap(),
            closed: t["closed"].as_bool().unwrap_or(false),
        },
        "unknown" => Type::Unknown,
        other => panic!("unsupported lexicon type {other}"),
    }
}

/// Checks a record the way `validate_record` does, against `catalog`.
fn check_in(catalog: &Catalog, case: &Value) -> Result<(), String> {
    let data = &case["data"];
    let nsid = data["$type"].as_str().unwrap();
    let (key, schema) = catalog.record(nsid).unwrap();
    let rkey = RecordKey::parse(case["rkey"].as_str().unwrap()).unwrap();
    check_key(&Nsid::parse(nsid).unwrap(), key, &rkey).map_err(|e| e.message)?;
    Checker::new(catalog).object("Record", schema, data)
}

#[test]
fn interop_record_data_vectors() {
    let Some(doc) = interop("lexicon/catalog/record.json") else {
        return;
    };
    let catalog = Catalog::new([doc_from_json(&doc)]);
    let valid_cases = interop("lexicon/record-data-valid.json").unwrap();
    let valid_cases = valid_cases.as_array().unwrap();
    for case in valid_cases {
        assert_eq!(check_in(&catalog, case), Ok(()), "{}", case["name"]);
    }
    let invalid_cases = interop("lexicon/record-data-invalid.json").unwrap();
    let invalid_cases = invalid_cases.as_array().unwrap();
    for case in invalid_cases {
        let result = check_in(&catalog, case);
        assert!(
            result.is_err(),
            "accepted {}: {}",
            case["name"],
            case["data"]
        );
        // The `unknown` cases also lack the required `integer`: refused
        // for the `unknown` field alone too.
        if case["data"].get("unknown").is_some() {
            let mut fixed = case.clone();
            fixed["data"]["integer"] = json!(1);
            let message = check_in(&catalog, &fixed).unwrap_err();
            assert_eq!(
                message, "Record/unknown must be an object",
                "{}",
                case["name"]
            );
        }
    }
    println!(
        "lexicon/record-data-*: {} valid and {} invalid cases passed",
        valid_cases.len(),
        invalid_cases.len()
    );
}
