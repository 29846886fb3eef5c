//! The demo checkout page in headless Chromium, with a lab handset on the
//! real Asterisk 22 (`scripts/browser`, `scripts/asterisk up`).

mod chromium;
mod demo_browser_e2e;
