//! Test access to the shared interop vectors in `../shared/interop-tests/`
//! (relative to the workspace root). A missing folder skips the test with a
//! printed reason; a present but unreadable file fails it.

use std::path::PathBuf;

/// The text of `interop-tests/<rel>`, or `None` (after printing `SKIP`) when
/// the interop folder is absent.
pub(crate) fn text(rel: &str) -> Option<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/interop-tests");
    if !dir.is_dir() {
        eprintln!("SKIP: interop vectors not found at {}", dir.display());
        return None;
    }
    let path = dir.join(rel);
    Some(
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} not readable: {e}", path.display())),
    )
}

/// `interop-tests/<rel>` parsed as JSON.
pub(crate) fn json(rel: &str) -> Option<serde_json::Value> {
    text(rel).map(|t| serde_json::from_str(&t).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

/// `interop-tests/<rel>` as a JSON array of cases.
pub(crate) fn cases(rel: &str) -> Option<Vec<serde_json::Value>> {
    match json(rel)? {
        serde_json::Value::Array(cases) => Some(cases),
        other => panic!("{rel}: expected a JSON array, got {other}"),
    }
}

/// The did:plc reference implementation's audit-log test vectors
/// (`log_*.json`, as file name and text). They are not part of this
/// repository: they are read from `AURORA_PLC_VECTORS`, or from
/// `interop-tests/plc/` when that folder exists; otherwise `None`, after
/// printing why.
pub(crate) fn plc_vectors() -> Option<Vec<(String, String)>> {
    let dir = std::env::var("AURORA_PLC_VECTORS").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/interop-tests/plc"),
        PathBuf::from,
    );
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "SKIP: did:plc audit-log vectors not found at {} (set AURORA_PLC_VECTORS)",
            dir.display()
        );
        return None;
    };
    let mut out: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("log_"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path())
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect();
    out.sort();
    Some(out)
}
