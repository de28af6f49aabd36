//! The record lexicons this PDS knows: the `app.bsky.*`, `chat.bsky.*` and
//! `com.atproto.*` record types the reference PDS validates, and every
//! definition their records can reach. Written from the published lexicons
//! as schemas for the validator; view-only definitions (what an AppView
//! returns) are left out, since no record contains them.
//!
//! Keeping up: a record type added upstream is unknown here until it is
//! added below, and is then stored with `validationStatus: "unknown"`.

use std::sync::LazyLock;

use super::schema::{
    Catalog, Doc, Format, KeyType, Object, array, blob, boolean, formatted, integer, object, r,
    string, union,
};

/// The catalog of known record lexicons, built on first use.
pub(super) static KNOWN: LazyLock<Catalog> = LazyLock::new(|| Catalog::new(docs()));

const STRONG_REF: &str = "com.atproto.repo.strongRef";
const FACET: &str = "app.bsky.richtext.facet";
const SELF_LABELS: &str = "com.atproto.label.defs#selfLabels";
const ASPECT_RATIO: &str = "app.bsky.embed.defs#aspectRatio";
const IMAGES: [&str; 2] = ["image/png", "image/jpeg"];
/// The media embeds, in the order the lexicons list them.
const MEDIA: [&str; 4] = [
    "app.bsky.embed.images",
    "app.bsky.embed.video",
    "app.bsky.embed.gallery",
    "app.bsky.embed.external",
];

fn datetime() -> super::schema::Str {
    formatted(Format::Datetime)
}

fn did() -> super::schema::Str {
    formatted(Format::Did)
}

fn at_uri() -> super::schema::Str {
    formatted(Format::AtUri)
}

fn uri() -> super::schema::Str {
    formatted(Format::Uri)
}

/// A string of at most `graphemes` graphemes and `bytes` UTF-8 bytes.
fn text(graphemes: usize, bytes: usize) -> super::schema::Str {
    string().max_graphemes(graphemes).max_len(bytes)
}

/// The body of a like and of a repost: the post, when, and the repost it
/// was found through.
fn reaction() -> Object {
    object()
        .req("subject", r(STRONG_REF))
        .req("createdAt", datetime())
        .opt("via", r(STRONG_REF))
}

#[allow(clippy::too_many_lines)] // one schema after another
fn docs() -> Vec<Doc> {
    vec![
        // ---------------------------------------------------- com.atproto
        Doc::new("com.atproto.repo.strongRef").def(
            "main",
            object()
                .req("uri", at_uri())
                .req("cid", formatted(Format::Cid)),
        ),
        Doc::new("com.atproto.label.defs")
            .def(
                "selfLabels",
                object().req("values", array(r("#selfLabel")).max_len(10)),
            )
            .def("selfLabel", object().req("val", string().max_len(128)))
            .def(
                "labelValueDefinition",
                object()
                    .req("identifier", text(100, 100))
                    .req("severity", string())
                    .req("blurs", string())
                    .opt("defaultSetting", string())
                    .opt("adultOnly", boolean())
                    .req("locales", array(r("#labelValueDefinitionStrings"))),
            )
            .def(
                "labelValueDefinitionStrings",
                object()
                    .req("lang", formatted(Format::Language))
                    .req("name", text(64, 640))
                    .req("description", text(10_000, 100_000)),
            )
            .def("labelValue", string()),
        Doc::new("com.atproto.moderation.defs")
            .def("reasonType", string())
            .def("subjectType", string()),
        Doc::new("com.atproto.lexicon.schema")
            .record(KeyType::Nsid, object().req("lexicon", integer())),
        // ------------------------------------------------ app.bsky shared
        Doc::new(FACET)
            .def(
                "main",
                object()
                    .req("index", r("#byteSlice"))
                    .req("features", array(union(&["#mention", "#link", "#tag"]))),
            )
            .def("mention", object().req("did", did()))
            .def("link", object().req("uri", uri()))
            .def("tag", object().req("tag", text(64, 640)))
            .def(
                "byteSlice",
                object()
                    .req("byteStart", integer().min(0))
                    .req("byteEnd", integer().min(0)),
            ),
        Doc::new("app.bsky.embed.defs").def(
            "aspectRatio",
            object()
                .req("width", integer().min(1))
                .req("height", integer().min(1)),
        ),
        Doc::new("app.bsky.embed.images")
            .def(
                "main",
                object().req("images", array(r("#image")).max_len(4)),
            )
            .def(
                "image",
                object()
                    .req("image", blob(&["image/*"], 2_000_000))
                    .req("alt", string())
                    .opt("aspectRatio", r(ASPECT_RATIO)),
            ),
        Doc::new("app.bsky.embed.gallery")
            .def(
                "main",
                object().req("items", array(union(&["#image"])).max_len(20)),
            )
            .def(
                "image",
                object()
                    .req("image", blob(&["image/*"], 2_000_000))
                    .req("alt", string())
                    .req("aspectRatio", r(ASPECT_RATIO)),
            ),
        Doc::new("app.bsky.embed.video")
            .def(
                "main",
                object()
                    .req("video", blob(&["video/mp4"], 300_000_000))
                    .opt("captions", array(r("#caption")).max_len(20))
                    .opt("alt", string())
                    .opt("aspectRatio", r(ASPECT_RATIO))
                    .opt("presentation", string()),
            )
            .def(
                "caption",
                object()
                    .req("lang", formatted(Format::Language))
                    .req("file", blob(&["text/vtt"], 20_000)),
            ),
        Doc::new("app.bsky.embed.external")
            .def("main", object().req("external", r("#external")))
            .def(
                "external",
                object()
                    .req("uri", uri())
                    .req("title", string())
                    .req("description", string())
                    .opt("thumb", blob(&["image/*"], 1_000_000))
                    .opt("associatedRefs", array(r(STRONG_REF))),
            ),
        Doc::new("app.bsky.embed.record").def("main", object().req("record", r(STRONG_REF))),
        Doc::new("app.bsky.embed.recordWithMedia").def(
            "main",
            object()
                .req("record", r("app.bsky.embed.record"))
                .req("media", union(&MEDIA)),
        ),
        Doc::new("app.bsky.graph.defs").def("listPurpose", string()),
        Doc::new("app.bsky.labeler.defs").def(
            "labelerPolicies",
            object()
                .req("labelValues", array(r("com.atproto.label.defs#labelValue")))
                .opt(
                    "labelValueDefinitions",
                    array(r("com.atproto.label.defs#labelValueDefinition")),
                ),
        ),
        // ------------------------------------------------ app.bsky records
        Doc::new("app.bsky.actor.profile").record(
            KeyType::Literal("self".to_owned()),
            object()
                .opt("displayName", text(64, 640))
                .opt("description", text(256, 2560))
                .opt("pronouns", text(20, 200))
                .opt("website", uri())
                .opt("avatar", blob(&IMAGES, 1_000_000))
                .opt("banner", blob(&IMAGES, 1_000_000))
                .opt("labels", union(&[SELF_LABELS]))
                .opt("joinedViaStarterPack", r(STRONG_REF))
                .opt("pinnedPost", r(STRONG_REF))
                .opt("createdAt", datetime()),
        ),
        Doc::new("app.bsky.actor.status")
            .record(
                KeyType::Literal("self".to_owned()),
                object()
                    .req("status", string())
                    .opt("embed", union(&["app.bsky.embed.external"]))
                    .opt("durationMinutes", integer().min(1))
                    .req("createdAt", datetime()),
            )
            .token("live"),
        Doc::new("app.bsky.feed.generator").record(
            KeyType::Any,
            object()
                .req("did", did())
                .req("displayName", text(24, 240))
                .opt("description", text(300, 3000))
                .opt("descriptionFacets", array(r(FACET)))
                .opt("avatar", blob(&IMAGES, 1_000_000))
                .opt("acceptsInteractions", boolean())
                .opt("labels", union(&[SELF_LABELS]))
                .opt("contentMode", string())
                .req("createdAt", datetime()),
        ),
        Doc::new("app.bsky.feed.like").record(KeyType::Tid, reaction()),
        Doc::new("app.bsky.feed.post")
            .record(
                KeyType::Tid,
                object()
                    .req("text", text(300, 3000))
                    .opt("entities", array(r("#entity")))
                    .opt("facets", array(r(FACET)))
                    .opt("reply", r("#replyRef"))
                    .opt(
                        "embed",
                        union(&[
                            MEDIA[0],
                            MEDIA[1],
                            MEDIA[2],
                            MEDIA[3],
                            "app.bsky.embed.record",
                            "app.bsky.embed.recordWithMedia",
                        ]),
                    )
                    .opt("langs", array(formatted(Format::Language)).max_len(3))
                    .opt("labels", union(&[SELF_LABELS]))
                    .opt("tags", array(text(64, 640)).max_len(8))
                    .req("createdAt", datetime()),
            )
            .def(
                "replyRef",
                object()
                    .req("root", r(STRONG_REF))
                    .req("parent", r(STRONG_REF)),
            )
            .def(
                "entity",
                object()
                    .req("index", r("#textSlice"))
                    .req("type", string())
                    .req("value", string()),
            )
            .def(
                "textSlice",
                object()
                    .req("start", integer().min(0))
                    .req("end", integer().min(0)),
            ),
        Doc::new("app.bsky.feed.postgate")
            .record(
                KeyType::Tid,
                object()
                    .req("createdAt", datetime())
                    .req("post", at_uri())
                    .opt("detachedEmbeddingUris", array(at_uri()).max_len(50))
                    .opt("embeddingRules", array(union(&["#disableRule"])).max_len(5)),
            )
            .def("disableRule", object()),
        Doc::new("app.bsky.feed.repost").record(KeyType::Tid, reaction()),
        Doc::new("app.bsky.feed.threadgate")
            .record(
                KeyType::Tid,
                object()
                    .req("post", at_uri())
                    .opt(
                        "allow",
                        array(union(&[
                            "#mentionRule",
                            "#followerRule",
                            "#followingRule",
                            "#listRule",
                        ]))
                        .max_len(5),
                    )
                    .req("createdAt", datetime())
                    .opt("hiddenReplies", array(at_uri()).max_len(300)),
            )
            .def("mentionRule", object())
            .def("followerRule", object())
            .def("followingRule", object())
            .def("listRule", object().req("list", at_uri())),
        Doc::new("app.bsky.graph.block").record(
            KeyType::Tid,
            object().req("subject", did()).req("createdAt", datetime()),
        ),
        Doc::new("app.bsky.graph.follow").record(
            KeyType::Tid,
            object()
                .req("subject", did())
                .req("createdAt", datetime())
                .opt("via", r(STRONG_REF)),
        ),
        Doc::new("app.bsky.graph.list").record(
            KeyType::Tid,
            object()
                .req("purpose", r("app.bsky.graph.defs#listPurpose"))
                .req("name", string().max_len(64).min_len(1))
                .opt("description", text(300, 3000))
                .opt("descriptionFacets", array(r(FACET)))
                .opt("avatar", blob(&IMAGES, 1_000_000))
                .opt("labels", union(&[SELF_LABELS]))
                .req("createdAt", datetime()),
        ),
        Doc::new("app.bsky.graph.listblock").record(
            KeyType::Tid,
            object()
                .req("subject", at_uri())
                .req("createdAt", datetime()),
        ),
        Doc::new("app.bsky.graph.listitem").record(
            KeyType::Tid,
            object()
                .req("subject", did())
                .req("list", at_uri())
                .req("createdAt", datetime()),
        ),
        Doc::new("app.bsky.graph.starterpack")
            .record(
                KeyType::Tid,
                object()
                    .req("name", text(50, 500).min_len(1))
                    .opt("description", text(300, 3000))
                    .opt("descriptionFacets", array(r(FACET)))
                    .req("list", at_uri())
                    .opt("feeds", array(r("#feedItem")).max_len(3))
                    .req("createdAt", datetime()),
            )
            .def("feedItem", object().req("uri", at_uri())),
        Doc::new("app.bsky.graph.verification").record(
            KeyType::Tid,
            object()
                .req("subject", did())
                .req("handle", formatted(Format::Handle))
                .req("displayName", string())
                .req("createdAt", datetime()),
        ),
        Doc::new("app.bsky.labeler.service").record(
            KeyType::Literal("self".to_owned()),
            object()
                .req("policies", r("app.bsky.labeler.defs#labelerPolicies"))
                .opt("labels", union(&[SELF_LABELS]))
                .req("createdAt", datetime())
                .opt(
                    "reasonTypes",
                    array(r("com.atproto.moderation.defs#reasonType")),
                )
                .opt(
                    "subjectTypes",
                    array(r("com.atproto.moderation.defs#subjectType")),
                )
                .opt("subjectCollections", array(formatted(Format::Nsid))),
        ),
        Doc::new("app.bsky.notification.declaration").record(
            KeyType::Literal("self".to_owned()),
            object().req("allowSubscriptions", string()),
        ),
        // ------------------------------------------------------- chat.bsky
        Doc::new("chat.bsky.actor.declaration").record(
            KeyType::Literal("self".to_owned()),
            object()
                .req("allowIncoming", string())
                .opt("allowGroupInvites", string()),
        ),
    ]
}
