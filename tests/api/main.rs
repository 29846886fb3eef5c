//! The API layer, no Asterisk: the merchant API and the store on SQLite and
//! PostgreSQL (each both-stores test runs once per database; PostgreSQL
//! only with `VOICEPAY_TEST_DATABASE_URL`), the matcher with the stub
//! issuer, webhooks to a real receiver, the order status stream, the demo
//! page's backend on its own listener, the `voicepay` binary's commands,
//! and the `[limits]`.

mod api_bindings;
mod api_orders;
mod cli;
mod contract;
mod demo;
mod key_lifecycle;
mod limits;
mod matcher;
mod order_events;
mod store_calls;
mod store_inbound;
mod store_lifecycle;
mod webhook_targets;
mod webhooks;
