//! The demo checkout page and its agent desk in headless Chromium, with
//! lab phones on the real Asterisk 22 (`scripts/browser`, `scripts/asterisk
//! up`).

mod chromium;
mod demo_browser_e2e;
mod desk_browser_e2e;
