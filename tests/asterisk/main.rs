//! End to end on the real lab Asterisk 22 (`scripts/asterisk up`, and
//! `set -a; . scripts/lab.env; set +a`): the lab itself, payments by phone
//! in every flow, webhooks after real calls, no secret anywhere. Without
//! Asterisk these tests skip, except under `CI=true`, where they fail.
//!
//! The tests run in parallel: each has its own Stasis app and handset
//! numbers, and holds a share of Asterisk's log (`lab::log_window`) so the
//! lab's reload check reads a stretch of it that only its own reload wrote. Tests that restart Asterisk or kill the daemon have binaries of
//! their own (`tests/asterisk_restart_e2e.rs`, `tests/bank_kill_restart.rs`).

mod assisted_e2e;
mod assisted_sip_e2e;
mod asterisk_lab;
mod callback_e2e;
mod caller_id_e2e;
mod carrier_e2e;
mod carrier_trust;
mod common;
mod dtmf_carrier_e2e;
mod machine_e2e;
mod masquerade_e2e;
mod no_secret_e2e;
mod outbound_e2e;
mod payments_e2e;
mod transfer_inbound_e2e;
mod webhooks_e2e;
