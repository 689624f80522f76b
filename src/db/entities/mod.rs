//! Database entities (sea-orm 2). Times are unix seconds in `i64`, the same on every backend.
pub mod audit;
pub mod chat_message;
pub mod cohost;
pub mod file;
pub mod invitation;
pub mod login_code;
pub mod mail;
pub mod meeting;
pub mod node;
pub mod note;
pub mod note_update;
pub mod note_version;
pub mod participation;
pub mod password_attempt;
pub mod session;
pub mod sso_login;
pub mod user;
