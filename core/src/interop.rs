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
