//! voicepay: card payments over two channels. The merchant sends the order
//! over HTTPS; the cardholder keys the secret on the phone through Asterisk.
//!
//! Layout (see DESIGN.md): [`api`] is the merchant HTTP edge, [`store`] the
//! database, [`crypto`] protection of card data, [`domain`] the validated
//! values and the order lifecycle; [`app`] wires them together.

pub mod api;
pub mod app;
pub mod ari;
pub mod bank;
pub mod calls;
pub mod cli;
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
