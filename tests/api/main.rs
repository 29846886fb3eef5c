//! The API layer, no Asterisk: the merchant API and the store on SQLite and
//! PostgreSQL (each both-stores test runs once per database; PostgreSQL
//! only with `VOICEPAY_TEST_DATABASE_URL`), the matcher with the stub
//! issuer, webhooks to a real receiver, the order status stream, and the
//! `voicepay` binary's commands.

mod api_bindings;
mod api_orders;
mod cli;
mod contract;
mod matcher;
mod order_events;
mod store_calls;
mod store_lifecycle;
mod webhooks;
