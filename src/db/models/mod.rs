//! The queries the apiserver makes, one named function per use, over the entities in
//! [`super::entities`]. Handlers parse a request, call these, and map the answer; the rules
//! that must hold whichever handler writes (compare-and-set of a meeting's servers, what
//! makes a session valid) live here, once.
//!
//! Errors are the database's own ([`sea_orm::DbErr`]); the handler's error type maps them
//! (unavailable → 503, anything else → 500 with the cause logged).

pub mod chat;
pub mod file;
pub mod login_code;
pub mod mail;
pub mod meeting;
pub mod node;
pub mod note;
pub mod participation;
pub mod session;
pub mod sso_login;
pub mod user;
