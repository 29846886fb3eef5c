//! voicepay: card payments over two channels. The merchant sends the order
//! over HTTPS; the cardholder keys the secret on the phone through Asterisk.
//!
//! # Map
//!
//! A payment flows api → store ← calls → matcher → bank, and imports follow
//! that direction: a module never imports one above it. Where a lower module
//! needs something from above (the store rendering a webhook body), it is
//! handed a function when it is built. Top to bottom:
//!
//! | layer | modules | what |
//! |---|---|---|
//! | wiring | [`app`], [`cli`] | builds everything from [`config`], runs it until shutdown |
//! | edges | [`api`], [`demo`], [`notify`], [`views`] | the merchant HTTP API, the lab checkout page, webhook delivery, and what merchants see (order, webhook envelope, events) |
//! | calls | [`calls`] | the desk that claims calls, the callback / transfer / inbound flows, one IVR session per call |
//! | matcher | [`matcher`] | joins an order with the keyed secret, moves it to `authorizing`, asks the issuer once, records the answer |
//! | issuer link | [`bank`] | the trait an issuer link implements, the stub issuer with the test cards, and the ISO 8583 codec and framing ([`bank::iso8583`]) |
//! | adapters | [`ari`], [`store`], [`merchants`] | Asterisk's REST Interface; the database (SQLite or PostgreSQL); merchant on-boarding |
//! | protection | [`crypto`] | sealing of card and ID numbers, fingerprints, PIN blocks, keys |
//! | settings | [`config`] | typed settings; the IVR's defaults come from [`ivr`] |
//! | pure logic | [`ivr`] | the IVR state machine (no IO) |
//! | values | [`domain`], [`clock`], [`telemetry`] | validated values and the order lifecycle; time; metrics and readiness |
//!
//! # Error policy
//!
//! - **Module boundaries speak typed errors** (`thiserror`): [`store::StoreError`],
//!   [`ari::AriError`], [`bank::IssuerError`], [`crypto::CryptoError`],
//!   [`config::ConfigError`], [`domain::Invalid`]. A caller can tell what
//!   went wrong and decide (a conflict, an unknown bank answer, a refused
//!   value).
//! - **`anyhow` with `.context()`** is for start-up ([`app`], [`cli`], and
//!   the loaders they call: keys, the stub issuer's cards and state file,
//!   merchant on-boarding, the demo merchant) and
//!   for the workers and flows that only log and carry on ([`calls`],
//!   [`matcher`], [`notify`]): there the error is reported, never matched.
//! - **What reaches a merchant** is one [`api::ApiError`]: a stable code and
//!   a sentence; an internal error is logged with its cause and answered with
//!   a bare 500. A caller hears a prompt, and a merchant a result code
//!   ([`domain::ResultCode`]), never an error's text.
//! - **Nothing secret in an error**: no error carries a PIN, CVN2, expiry,
//!   or a full card or ID number (values are refused by code, not echoed).
//! - **A write whose failure matters is never dropped**: audit events,
//!   outbox rows and status changes are written with `?` or logged where
//!   they cannot be propagated; `let _ =` is kept for what may fail
//!   harmlessly (closing a socket, hanging up a channel already gone, a
//!   task's join result after shutdown), with a comment where it is not
//!   obvious.

pub mod api;
pub mod app;
pub mod ari;
pub mod bank;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod domain;
pub mod ivr;
pub mod matcher;
pub mod merchants;
pub mod notify;
pub mod store;
pub mod telemetry;
pub mod views;
