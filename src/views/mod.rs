//! What merchants see, defined once: the order ([`OrderView`]), the
//! webhook envelope ([`webhook_body`]), a webhook event and its delivery
//! ([`EventView`]) and a live status event ([`OrderEvent`]). The API and
//! the webhook outbox both render from here; the store is handed
//! [`webhook_body`] when it is built, so it writes webhook bodies without
//! importing anything above it.

mod order;
mod status;
mod webhook;

pub use order::{AttemptView, CardView, OrderView, RefundView, ResultView};
pub use status::OrderEvent;
pub use webhook::{webhook_body, EventList, EventView};

/// Unix milliseconds as an RFC 3339 UTC timestamp with exactly three
/// fraction digits (`2026-11-25T12:34:56.340Z`): every API, webhook and
/// status-stream timestamp has the same width, so they sort as strings.
pub fn rfc3339(ms: i64) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod rfc3339_tests {
    use super::rfc3339;

    #[test]
    fn the_fraction_always_has_three_digits() {
        // 2026-11-25T12:34:56Z
        let base = 1_795_610_096_000;
        assert_eq!(rfc3339(base), "2026-11-25T12:34:56.000Z");
        assert_eq!(rfc3339(base + 300), "2026-11-25T12:34:56.300Z");
        assert_eq!(rfc3339(base + 340), "2026-11-25T12:34:56.340Z");
        assert_eq!(rfc3339(base + 345), "2026-11-25T12:34:56.345Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn it_parses_back_as_rfc3339() {
        let s = rfc3339(1_795_610_096_340);
        let t = time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
            .unwrap();
        assert_eq!(t.unix_timestamp_nanos(), 1_795_610_096_340 * 1_000_000);
    }
}
