//! Authentication building blocks: password hashing, session tokens
//! (HS256 access and refresh JWTs) and inter-service auth JWTs (ES256K/ES256).

pub mod password;
pub mod service_auth;
pub mod tokens;
