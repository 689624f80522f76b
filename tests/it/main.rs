//! Every integration test in one binary: each file here is a module, all share
//! `tests/support` (the real peers, the appliance runner). One binary links the appliance once
//! instead of once per file. Run one file's tests with `cargo test --test it meeting_controls::`.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod allocator_protocol;
mod allocator_strategies;
mod backup;
mod bad_input;
mod cli;
mod files;
mod fuzz_corpus;
mod hardening;
mod loadtest;
mod mail_outbox;
mod media_browser;
mod media_control;
mod media_robustness;
mod media_rust_client;
mod meeting_controls;
mod meetings;
mod notes;
mod operations;
mod package;
mod preflight;
mod room_ui;
mod rush;
mod sfu_attacks;
mod signin;
mod split;
mod sso;
mod tls;
mod turn;
mod turn_attacks;
mod web_client;
