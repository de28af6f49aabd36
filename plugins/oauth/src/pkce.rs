//! PKCE (RFC 7636), `S256` only: the profile requires it and forbids
//! `plain`. An authorization request carries `code_challenge`
//! (base64url of the SHA-256 of a secret `code_verifier`); the token
//! request that redeems the code must carry the verifier itself.

use aurora_core::store::constant_time_eq;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Why a PKCE parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    /// A method other than `S256`.
    #[error("code_challenge_method must be S256")]
    Method,
    /// A challenge that is not a base64url SHA-256 (43 characters).
    #[error("code_challenge must be the base64url SHA-256 of the verifier (43 characters)")]
    Challenge,
    /// A verifier of the wrong length or alphabet.
    #[error("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    Verifier,
    /// A well-formed verifier that is not the challenge's.
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

impl PkceError {
    /// The OAuth error code: `invalid_request` for the authorization
    /// request's parameters, `invalid_grant` for a verifier that fails.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            Self::Method | Self::Challenge => "invalid_request",
            Self::Verifier | Self::Mismatch => "invalid_grant",
        }
    }
}

/// Checks an authorization request's `code_challenge` and
/// `code_challenge_method` (which defaults to `plain` in RFC 7636, so it
/// must be given).
pub fn check_challenge(challenge: &str, method: Option<&str>) -> Result<(), PkceError> {
    if method != Some("S256") {
        return Err(PkceError::Method);
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(challenge)
        .map_err(|_| PkceError::Challenge)?;
    if challenge.len() != 43 || decoded.len() != 32 {
        return Err(PkceError::Challenge);
    }
    Ok(())
}

/// Checks a token request's `code_verifier` against the stored challenge.
pub fn verify(challenge: &str, verifier: &str) -> Result<(), PkceError> {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return Err(PkceError::Verifier);
    }
    let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let same = constant_time_eq(expected.as_bytes(), challenge.as_bytes());
    if same {
        Ok(())
    } else {
        Err(PkceError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifies() {
        // Appendix B of RFC 7636.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(check_challenge(challenge, Some("S256")), Ok(()));
        assert_eq!(verify(challenge, verifier), Ok(()));
    }

    #[test]
    fn plain_short_and_foreign_values_are_refused() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        for method in [None, Some("plain"), Some("s256")] {
            assert_eq!(check_challenge(challenge, method), Err(PkceError::Method));
        }
        for bad in [
            "",
            "abc",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM=",
            "!9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ] {
            assert_eq!(
                check_challenge(bad, Some("S256")),
                Err(PkceError::Challenge),
                "{bad}"
            );
        }
        let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX";
        let err = verify(challenge, wrong).unwrap_err();
        assert_eq!(
            (err.clone(), err.oauth_error()),
            (PkceError::Mismatch, "invalid_grant")
        );
        for bad in [
            "short",
            &"a".repeat(129),
            "dBjftJeZ4CVP+mB92K27uhbUJU1p1r/wW1gFWFOEjXk",
        ] {
            assert_eq!(verify(challenge, bad), Err(PkceError::Verifier), "{bad}");
        }
    }
}
