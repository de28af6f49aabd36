//! Authentication building blocks: password hashing (and, with the
//! accounts issue, session tokens and service auth).

pub mod password;
