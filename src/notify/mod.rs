//! `notify`: telling merchants, reliably, with signed webhooks.
//!
//! Events are written to `webhook_outbox` by the store in the same
//! transaction as the status change (`store::webhooks`); this module turns
//! them into HTTP requests: the event body (rendered by
//! [`crate::views::webhook_body`] when it was queued), its signature
//! ([`signature`]), when to try again ([`schedule`]) and the worker that
//! leases due rows and sends them ([`worker`]), and where they may go
//! ([`target`]: no loopback, private or other special address, checked
//! when the order is created and again when connecting). Everything a delivery needs
//! is in the database, so deliveries survive restarts and move between
//! nodes.

pub mod schedule;
pub mod signature;
pub mod target;
pub mod worker;

pub use schedule::Schedule;
pub use signature::{sign, signature_header, signature_header_multi};
pub use target::{special_range, Refused, TargetPolicy};
pub use worker::Notifier;
