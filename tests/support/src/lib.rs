//! voicepay's test kit: what the test binaries (`tests/<layer>/main.rs`,
//! `tests/*.rs`) and the daemon benchmark share. A dev-only crate, so its
//! public items are its interface: a helper one binary does not use is not
//! dead code.
//!
//! | module | what |
//! |---|---|
//! | [`app`] | [`spawn_app`]: a real voicepay on port 0 with its own SQLite file or PostgreSQL database, and a merchant; [`on_both_stores!`] |
//! | [`demo`] | a browser session on the demo page's own listener (its cookie kept) |
//! | [`fake_ari`] | a scripted fake of Asterisk's ARI (events WebSocket, REST) |
//! | [`iso8583`] | the Python ISO 8583 issuer peer, `voicepay serve` on `bank.kind = "iso8583"` as a child process, cardholders on the fake ARI |
//! | [`lab`] | the real Asterisk 22 lab (`scripts/asterisk up`): ARI, handset scripts, the baresip softphone |
//! | [`receiver`] | a merchant's webhook endpoint, and the signature check as the README writes it |
//! | [`sipp`] | SIPp as the lab carrier (127.0.0.3:5060): scenarios under `tests/sipp/`, RFC 4733 key-press recordings, the prompts a call heard |
//! | [`secrets`] | the "no secret anywhere" scanner |
//! | [`wait`] | [`wait_for`]: poll a condition instead of sleeping |
//! | [`log`] | `TEST_LOG=1`: the daemon's tracing output in tests |

pub mod app;
pub mod demo;
pub mod fake_ari;
pub mod iso8583;
pub mod lab;
pub mod log;
pub mod receiver;
pub mod secrets;
pub mod sipp;
pub mod wait;

pub use app::{order_body, spawn_app, spawn_app_with, test_settings, Db, TestApp};
pub use wait::{poll_until, wait_for, wait_some, wait_until};
