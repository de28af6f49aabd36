//! Blob references in records, in the current and the legacy form.

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::{DataError, RAW};

/// A reference to a blob from a record.
///
/// Current form: `{"$type": "blob", "ref": <link>, "mimeType": "...", "size": N}`.
/// Legacy form (older records): `{"cid": "<cid string>", "mimeType": "..."}`,
/// without a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// CID of the blob (raw codec).
    pub cid: Cid,
    /// Declared MIME type.
    pub mime_type: String,
    /// Size in bytes; `None` for the legacy form.
    pub size: Option<u64>,
}

impl BlobRef {
    /// Reads a blob reference (either form) from a map value.
    pub fn from_ipld(value: &Ipld) -> Result<Self, DataError> {
        let bad = |reason: &str| DataError::invalid("blob", reason);
        let Ipld::Map(map) = value else {
            return Err(bad("not an object"));
        };
        let mime_type = match map.get("mimeType") {
            Some(Ipld::String(m)) if !m.is_empty() => m.clone(),
            _ => return Err(bad("mimeType must be a non-empty string")),
        };
        if map.get("$type") == Some(&Ipld::String("blob".into())) {
            let cid = match map.get("ref") {
                Some(Ipld::Link(cid)) => *cid,
                _ => return Err(bad("ref must be a CID link")),
            };
            let size = match map.get("size") {
                Some(Ipld::Integer(n)) => {
                    u64::try_from(*n).map_err(|_| bad("size must not be negative"))?
                }
                _ => return Err(bad("size must be an integer")),
            };
            if cid.codec() != RAW {
                return Err(bad("ref must be a raw-codec CID"));
            }
            return Ok(Self {
                cid,
                mime_type,
                size: Some(size),
            });
        }
        match map.get("cid") {
            Some(Ipld::String(s)) if map.len() == 2 => Ok(Self {
                cid: Cid::try_from(s.as_str()).map_err(|_| bad("cid is not a valid CID"))?,
                mime_type,
                size: None,
            }),
            _ => Err(bad("neither a blob object nor a legacy blob reference")),
        }
    }

    /// The current (`$type: blob`) form of this reference, with `size`
    /// given explicitly because legacy references do not carry one.
    pub fn to_ipld(&self, size: u64) -> Ipld {
        Ipld::Map(
            [
                ("$type".to_owned(), Ipld::String("blob".into())),
                ("ref".to_owned(), Ipld::Link(self.cid)),
                ("mimeType".to_owned(), Ipld::String(self.mime_type.clone())),
                ("size".to_owned(), Ipld::Integer(i128::from(size))),
            ]
            .into_iter()
            .collect(),
        )
    }
}

/// Every blob reference in a record, in either form, depth first.
pub fn collect_blob_refs(value: &Ipld) -> Vec<BlobRef> {
    let mut found = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Ipld::Map(map) => {
                let typed_blob = map.get("$type") == Some(&Ipld::String("blob".into()));
                let legacy =
                    map.len() == 2 && map.contains_key("cid") && map.contains_key("mimeType");
                if (typed_blob || legacy)
                    && let Ok(blob) = BlobRef::from_ipld(v)
                {
                    found.push(blob);
                    continue;
                }
                stack.extend(map.values().rev());
            }
            Ipld::List(items) => stack.extend(items.iter().rev()),
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{cid_for, json_to_ipld};

    #[test]
    fn both_forms() {
        let cid = cid_for(RAW, b"image");
        let record = json_to_ipld(&serde_json::json!({
            "$type": "app.bsky.feed.post",
            "embed": { "images": [
                { "image": { "$type": "blob", "ref": { "$link": cid.to_string() }, "mimeType": "image/png", "size": 5 } },
                { "image": { "cid": cid.to_string(), "mimeType": "image/jpeg" } },
            ]},
        }))
        .unwrap();
        let refs = collect_blob_refs(&record);
        assert_eq!(refs.len(), 2);
        assert_eq!(
            refs[0],
            BlobRef {
                cid,
                mime_type: "image/png".into(),
                size: Some(5)
            }
        );
        assert_eq!(
            refs[1],
            BlobRef {
                cid,
                mime_type: "image/jpeg".into(),
                size: None
            }
        );
        assert_eq!(BlobRef::from_ipld(&refs[0].to_ipld(5)).unwrap(), refs[0]);
    }

    #[test]
    fn malformed_blobs_are_rejected() {
        let cid = cid_for(RAW, b"image");
        for bad in [
            serde_json::json!({ "$type": "blob", "mimeType": "image/png", "size": 5 }),
            serde_json::json!({ "$type": "blob", "ref": { "$link": cid.to_string() }, "mimeType": "image/png", "size": "5" }),
            serde_json::json!({ "$type": "blob", "ref": { "$link": cid.to_string() }, "size": 5 }),
            serde_json::json!({ "$type": "blob", "ref": { "$link": cid.to_string() }, "mimeType": "x", "size": -1 }),
        ] {
            assert!(json_to_ipld(&bad).is_err(), "{bad}");
        }
    }
}
