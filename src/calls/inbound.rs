//! The inbound flow (DESIGN.md flow 3): the cardholder dials voicepay's
//! access number (`Stasis(app, inbound)`, dialplan/inbound.conf). The
//! caller ID, normalised like the order's phone (`+86`, `0086`, `86`
//! dropped), finds that phone's `pending` orders of mode `inbound` (bound
//! payments included: they are inbound orders whose card comes from the
//! binding):
//!
//! - none: `no-pending-order`, goodbye, hang up; nothing changes;
//! - one: the IVR runs for it, as for a callback;
//! - several: the caller keys the order's **order code** and `#`
//!   (`enter-order-code`), then the IVR runs for that order.
//!
//! The order code: every inbound order gets an 8-digit code when it is
//! created, returned to the merchant as `order_code` in the order's API
//! view, for the merchant to tell the cardholder with the access number. It
//! lives in the same unique column as the transfer code (cleared when the
//! order ends) but it is not a bearer token: it only chooses among the
//! orders of the phone that is calling, so it is keyed in the open (not in
//! the IVR, which only handles secrets) and may be logged masked.

use super::desk::{call_span, record_order, Desk};
use super::live::{collect_code, play_prompts, Entry, Heard, Keyed};
use super::runner::CallEnd;
use super::session::run_order;
use crate::ari::{AriCommands, AriRest, Call, Event, HangupReason};
use crate::domain::Phone;
use crate::matcher::{Matcher, Via};
use crate::store::{now_ms, OrderRow};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::Span;

/// Tries the caller gets to key an order code.
const CODE_ATTEMPTS: u64 = 3;

/// Digits of an order code.
pub const ORDER_CODE_LEN: usize = 8;

/// The order among `orders` whose order code the caller keyed.
pub fn pick<'a>(orders: &'a [OrderRow], keyed: &str) -> Option<&'a OrderRow> {
    orders
        .iter()
        .find(|o| o.call_code.as_deref() == Some(keyed))
}

/// Takes a call that entered the app with `["inbound"]` and runs it on
/// its own task.
pub fn take_inbound<M: Matcher + 'static>(desk: &Arc<Desk<M>>, call: Call) {
    let span = call_span("inbound", &call.channel_id);
    let this = desk.clone();
    desk.spawn_call(span, async move { inbound(&this, call).await });
}

async fn inbound<M: Matcher + 'static>(desk: &Desk<M>, call: Call) {
    let Call {
        channel_id,
        first,
        mut events,
        ..
    } = call;
    let (caller, channel_lang) = match &first {
        Event::StasisStart { channel, .. } => {
            (channel.caller.number.clone(), channel.language.clone())
        }
        _ => (String::new(), None),
    };
    if let Err(e) = desk.rest.answer(&channel_id).await {
        tracing::debug!(error = %e, "answer failed");
    }
    let orders = callers_orders(desk, &caller).await;
    let lang = channel_lang
        .filter(|l| !l.is_empty())
        .or_else(|| orders.first().map(|o| o.language.as_str().to_owned()));
    let lang = lang.as_deref();
    let chosen = match orders.len() {
        0 => None,
        1 => Some(&orders[0]),
        _ => match choose(&desk.rest, &channel_id, &orders, lang, &mut events).await {
            Choice::Order(o) => Some(o),
            Choice::Gone => return,
            Choice::NoneKeyed => {
                let bye = ["fail-input_timeout", "goodbye"];
                say_and_hang_up(&desk.rest, &channel_id, &bye, lang, &mut events).await;
                return;
            }
        },
    };
    let claimed = match chosen {
        Some(o) => {
            record_order(&Span::current(), &o.id);
            desk.claim_incoming(&o.id, &channel_id, "inbound call")
                .await
        }
        None => None,
    };
    let Some(order) = claimed else {
        let bye = ["no-pending-order", "goodbye"];
        say_and_hang_up(&desk.rest, &channel_id, &bye, lang, &mut events).await;
        return;
    };
    tracing::info!("inbound call claimed the order");
    let via = Via::Inbound { caller_id: caller };
    run_order(
        desk,
        &order,
        &channel_id,
        &via,
        &mut events,
        CallEnd::Hangup,
    )
    .await;
    desk.release(&channel_id).await;
}

/// The `pending` inbound orders of the calling number (none when it is
/// not a phone number).
async fn callers_orders<M>(desk: &Desk<M>, caller: &str) -> Vec<OrderRow> {
    let phone = Phone::parse(caller.trim()).ok();
    let orders = match &phone {
        Some(p) => match desk
            .store
            .pending_inbound_orders(p.as_str(), now_ms())
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "inbound order lookup failed");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let shown = phone.as_ref().map(Phone::masked).unwrap_or_default();
    tracing::info!(caller = %shown, orders = orders.len(), "inbound call");
    orders
}

/// Asks for the order code until one of `orders` matches.
async fn choose<'a>(
    rest: &AriRest,
    channel_id: &str,
    orders: &'a [OrderRow],
    lang: Option<&str>,
    events: &mut UnboundedReceiver<Event>,
) -> Choice<'a> {
    let entry = Entry {
        len: ORDER_CODE_LEN,
        first_digit: Duration::from_secs(10),
        inter_digit: Duration::from_secs(5),
    };
    for n in 1..=CODE_ATTEMPTS {
        let prompt: &[&str] = if n == 1 {
            &["enter-order-code"]
        } else {
            &["invalid-input", "enter-order-code"]
        };
        match collect_code(rest, channel_id, n, prompt, lang, entry, events).await {
            Keyed::Gone => return Choice::Gone,
            Keyed::Timeout => {}
            Keyed::Code(code) => match pick(orders, &code) {
                Some(o) => return Choice::Order(o),
                None => tracing::info!("keyed order code matches no pending order"),
            },
        }
    }
    Choice::NoneKeyed
}

async fn say_and_hang_up(
    rest: &AriRest,
    channel_id: &str,
    prompts: &[&str],
    lang: Option<&str>,
    events: &mut UnboundedReceiver<Event>,
) {
    if play_prompts(rest, channel_id, 100, prompts, lang, events).await == Heard::Played {
        let _ = rest.hangup(channel_id, HangupReason::Normal).await;
    }
}

/// The order the caller picked, or why none.
enum Choice<'a> {
    Order(&'a OrderRow),
    NoneKeyed,
    Gone,
}

#[cfg(test)]
mod tests {
    use super::pick;
    use crate::domain::{CardKind, Language, Mode, OrderStatus};
    use crate::store::OrderRow;

    fn order(id: &str, code: &str) -> OrderRow {
        OrderRow {
            id: id.into(),
            merchant_id: "m".into(),
            merchant_order_id: id.into(),
            status: OrderStatus::Pending,
            mode: Mode::Inbound,
            amount: 100,
            currency: "CNY".into(),
            description: None,
            phone: "13800138000".into(),
            language: Language::Zh,
            notify_url: None,
            card_enc: String::new(),
            card_masked: String::new(),
            card_type: CardKind::Debit,
            card_fp: String::new(),
            id_enc: String::new(),
            id_masked: String::new(),
            binding_id: None,
            call_code: Some(code.into()),
            result_code: None,
            resp_code: None,
            result_message: None,
            attempts: 0,
            created_at: 0,
            updated_at: 0,
            expires_at: 0,
            notify_progress: 0,
        }
    }

    #[test]
    fn the_keyed_code_picks_among_the_callers_orders_only() {
        let orders = [order("a", "11112222"), order("b", "33334444")];
        assert_eq!(pick(&orders, "33334444").map(|o| o.id.as_str()), Some("b"));
        assert!(pick(&orders, "3333444").is_none());
        assert!(pick(&orders, "55556666").is_none());
    }
}
