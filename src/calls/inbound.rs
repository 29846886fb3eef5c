//! The inbound flow (DESIGN.md flow 3): the cardholder dials voicepay's
//! access number (`Stasis(app, inbound)`, dialplan/inbound.conf). The
//! caller ID, normalised like the order's phone (`+86`, `0086`, `86`
//! dropped), finds that phone's `pending` orders of mode `inbound` (bound
//! payments included: they are inbound orders whose card comes from the
//! binding).
//!
//! A caller ID can be spoofed, so by default (`inbound.require_order_code`)
//! it only narrows the search: every caller whose caller ID is a phone
//! number keys an **order code** and `#` (`key-order-code`) before anything
//! about an order is said or an order is claimed, whether that phone has
//! no, one or several pending orders (so the prompts do not even tell
//! whether it has one). The right code claims its order and the IVR runs
//! as for a callback; a wrong one is counted against the caller ID for the
//! Asia/Shanghai day (`inbound.wrong_codes_per_day`, then
//! `order-code-refused` and the call ends, on this and every later call
//! that day); a hang-up before the right code leaves every order `pending`
//! and unclaimed. The gate's decisions are `ivr::order_code::CodeGate`.
//!
//! With `require_order_code = false` the caller ID decides, as before:
//! - none: `no-pending-order`, goodbye, hang up; nothing changes;
//! - one: the IVR runs for it, as for a callback;
//! - several: the caller keys the order code and `#` (`enter-order-code`),
//!   then the IVR runs for that order.
//!
//! The order code: every inbound order gets an 8-digit code when it is
//! created, returned to the merchant as `order_code` in the order's API
//! view, for the merchant to tell the cardholder with the access number. It
//! lives in the same unique column as the transfer code (cleared when the
//! order ends). Keyed, it is a secret: held in a wiped
//! [`OrderCode`](crate::ivr::order_code::OrderCode), compared in constant
//! time, never logged (not even masked) and never put in a channel
//! variable.

use super::desk::{call_span, record_order, Desk};
use super::live::{collect_code, play_prompts, Entry, Heard, Keyed, Line};
use super::runner::CallEnd;
use super::session::run_order;
use crate::ari::{AriCommands, AriRest, Call, Event, HangupReason};
use crate::bank::shanghai_day;
use crate::domain::Phone;
use crate::ivr::order_code::{CodeGate, GateInput, GateStep, OrderCode, ORDER_CODE_LEN};
use crate::ivr::repeat::RepeatGuard;
use crate::matcher::{Matcher, Via};
use crate::store::{now_ms, OrderRow};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::Span;

/// Tries the caller gets to key an order code in one call.
const CODE_ATTEMPTS: u8 = 3;

/// How long the caller has to key the code: the IVR's digit timeouts
/// (`ivr.first_digit_timeout_secs`, `ivr.inter_digit_timeout_secs`).
fn code_entry<M>(desk: &Desk<M>) -> Entry {
    Entry {
        len: ORDER_CODE_LEN,
        first_digit: Duration::from_secs(desk.settings.ivr.first_digit_timeout_secs),
        inter_digit: Duration::from_secs(desk.settings.ivr.inter_digit_timeout_secs),
    }
}

/// The index of the order among `orders` whose order code the caller
/// keyed. Every order's code is compared, each in constant time.
pub fn pick(orders: &[OrderRow], keyed: &OrderCode) -> Option<usize> {
    let mut found = None;
    for (i, o) in orders.iter().enumerate() {
        let hit = o.call_code.as_deref().is_some_and(|c| keyed.matches(c));
        if hit && found.is_none() {
            found = Some(i);
        }
    }
    found
}

/// Takes a call that entered the app with `["inbound"]` and runs it on
/// its own task.
pub fn take_inbound<M: Matcher + 'static>(desk: &Arc<Desk<M>>, call: Call) {
    let span = call_span("inbound", &call.channel_id);
    let this = desk.clone();
    desk.spawn_call(span, async move { inbound(&this, call).await });
}

/// One inbound call: who calls, on which channel, in which language.
struct Caller<'a> {
    number: String,
    channel_id: &'a str,
    lang: Option<String>,
    events: UnboundedReceiver<Event>,
    /// The call's DTMF repeat guard, from the order code to the IVR.
    keys: RepeatGuard,
}

async fn inbound<M: Matcher + 'static>(desk: &Desk<M>, call: Call) {
    let Call {
        channel_id,
        first,
        events,
        ..
    } = call;
    let (number, lang) = match &first {
        Event::StasisStart { channel, .. } => {
            (channel.caller.number.clone(), channel.language.clone())
        }
        _ => (String::new(), None),
    };
    if let Err(e) = desk.rest.answer(&channel_id).await {
        tracing::debug!(error = %e, "answer failed");
    }
    let mut caller = Caller {
        number,
        channel_id: &channel_id,
        lang: lang.filter(|l| !l.is_empty()),
        events,
        keys: desk.settings.ivr.repeat_guard(),
    };
    let phone = Phone::parse(caller.number.trim()).ok();
    let chosen = match &phone {
        Some(p) if desk.settings.inbound.require_order_code => gated(desk, p, &mut caller).await,
        _ => by_caller_id(desk, phone.as_ref(), &mut caller).await,
    };
    let Some(order) = chosen else { return };
    pay(desk, &order, &mut caller).await;
}

/// The gate of `inbound.require_order_code`: the order whose code the
/// caller keyed, or None once the call has been ended (or is gone) with no
/// order touched.
async fn gated<M>(desk: &Desk<M>, phone: &Phone, caller: &mut Caller<'_>) -> Option<OrderRow> {
    let day = shanghai_day(time::OffsetDateTime::now_utc()).to_string();
    let per_day = desk.settings.inbound.wrong_codes_per_day;
    let wrong_today = match desk.store.order_code_tries(phone.as_str(), &day).await {
        Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "wrong order code count unavailable");
            say_and_hang_up(desk, caller, &["service-unavailable"]).await;
            return None;
        }
    };
    let mut orders = callers_orders(desk, Some(phone)).await;
    let mut gate = CodeGate::new(CODE_ATTEMPTS, per_day);
    let mut next = gate.start(wrong_today);
    let mut n = 0;
    loop {
        let prompt = match next {
            GateStep::Pass(i) => return Some(orders.swap_remove(i)),
            GateStep::End(prompts) => {
                if wrong_today >= per_day {
                    tracing::info!(caller = %phone.masked(), "caller ID over the day's wrong order codes");
                }
                say_and_hang_up(desk, caller, prompts).await;
                return None;
            }
            GateStep::Ask(prompt) => prompt,
        };
        n += 1;
        let keyed = collect_code(
            &desk.rest,
            caller.channel_id,
            n,
            prompt,
            caller.lang.as_deref(),
            code_entry(desk),
            Line {
                events: &mut caller.events,
                keys: &mut caller.keys,
            },
        )
        .await;
        let input = match keyed {
            Keyed::Gone => return None,
            Keyed::Timeout => GateInput::NothingKeyed,
            Keyed::Code(code) => match pick(&orders, &code) {
                Some(i) => GateInput::Right(i),
                None => wrong_code(desk, phone, &day, per_day).await,
            },
        };
        next = gate.step(input);
    }
}

/// Counts a wrong code against the caller ID; a count that cannot be
/// written ends the gate as the limit does (fail closed).
async fn wrong_code<M>(desk: &Desk<M>, phone: &Phone, day: &str, per_day: u32) -> GateInput {
    let today = match desk
        .store
        .record_wrong_order_code(phone.as_str(), day, now_ms())
        .await
    {
        Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count a wrong order code");
            per_day
        }
    };
    tracing::info!(caller = %phone.masked(), today, "wrong order code");
    GateInput::Wrong { today }
}

/// `inbound.require_order_code = false` (or a caller ID that is no phone
/// number): the caller's one pending order, or the one whose code they key
/// among several; None once the call has been ended.
async fn by_caller_id<M>(
    desk: &Desk<M>,
    phone: Option<&Phone>,
    caller: &mut Caller<'_>,
) -> Option<OrderRow> {
    let mut orders = callers_orders(desk, phone).await;
    if caller.lang.is_none() {
        caller.lang = orders.first().map(|o| o.language.as_str().to_owned());
    }
    match orders.len() {
        0 => {
            say_and_hang_up(desk, caller, &["no-pending-order", "goodbye"]).await;
            None
        }
        1 => orders.pop(),
        _ => match choose(&desk.rest, code_entry(desk), &orders, caller).await {
            Choice::Order(i) => Some(orders.swap_remove(i)),
            Choice::Gone => None,
            Choice::NoneKeyed => {
                say_and_hang_up(desk, caller, &["fail-input_timeout", "goodbye"]).await;
                None
            }
        },
    }
}

/// Claims the chosen order for this call and runs the IVR for it.
async fn pay<M: Matcher + 'static>(desk: &Desk<M>, order: &OrderRow, caller: &mut Caller<'_>) {
    record_order(&Span::current(), &order.id);
    let claimed = desk
        .claim_incoming(&order.id, caller.channel_id, "inbound call")
        .await;
    let Some(order) = claimed else {
        say_and_hang_up(desk, caller, &["no-pending-order", "goodbye"]).await;
        return;
    };
    tracing::info!("inbound call claimed the order");
    let via = Via::Inbound {
        caller_id: caller.number.clone(),
    };
    run_order(
        desk,
        &order,
        caller.channel_id,
        &via,
        &mut caller.events,
        CallEnd::Hangup,
        caller.keys.clone(),
    )
    .await;
    desk.release(caller.channel_id).await;
}

/// The `pending` inbound orders of the calling number (none when it is
/// not a phone number).
async fn callers_orders<M>(desk: &Desk<M>, phone: Option<&Phone>) -> Vec<OrderRow> {
    let orders = match phone {
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
    let shown = phone.map(Phone::masked).unwrap_or_default();
    tracing::info!(caller = %shown, orders = orders.len(), "inbound call");
    orders
}

/// Asks for the order code until one of `orders` matches
/// (`require_order_code = false`, several orders).
async fn choose(
    rest: &AriRest,
    entry: Entry,
    orders: &[OrderRow],
    caller: &mut Caller<'_>,
) -> Choice {
    for n in 1..=u64::from(CODE_ATTEMPTS) {
        let prompt: &[&str] = if n == 1 {
            &["enter-order-code"]
        } else {
            &["invalid-input", "enter-order-code"]
        };
        let lang = caller.lang.as_deref();
        let line = Line {
            events: &mut caller.events,
            keys: &mut caller.keys,
        };
        match collect_code(rest, caller.channel_id, n, prompt, lang, entry, line).await {
            Keyed::Gone => return Choice::Gone,
            Keyed::Timeout => {}
            Keyed::Code(code) => match pick(orders, &code) {
                Some(i) => return Choice::Order(i),
                None => tracing::info!("keyed order code matches no pending order"),
            },
        }
    }
    Choice::NoneKeyed
}

async fn say_and_hang_up<M>(desk: &Desk<M>, caller: &mut Caller<'_>, prompts: &[&str]) {
    let (rest, ch) = (&desk.rest, caller.channel_id);
    let lang = caller.lang.as_deref();
    if play_prompts(rest, ch, 100, prompts, lang, &mut caller.events).await == Heard::Played {
        let _ = rest.hangup(ch, HangupReason::Normal).await;
    }
}

/// The order the caller picked (its index), or why none.
enum Choice {
    Order(usize),
    NoneKeyed,
    Gone,
}

#[cfg(test)]
mod tests {
    use super::pick;
    use crate::domain::{CardKind, Language, Mode, OrderStatus};
    use crate::ivr::order_code::OrderCode;
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

    fn keyed(s: &str) -> OrderCode {
        let mut c = OrderCode::default();
        s.chars().for_each(|d| {
            c.push(d);
        });
        c
    }

    #[test]
    fn the_keyed_code_picks_among_the_callers_orders_only() {
        let orders = [order("a", "11112222"), order("b", "33334444")];
        assert_eq!(pick(&orders, &keyed("33334444")), Some(1));
        assert_eq!(pick(&orders, &keyed("11112222")), Some(0));
        assert!(pick(&orders, &keyed("3333444")).is_none());
        assert!(pick(&orders, &keyed("55556666")).is_none());
        assert!(pick(&[], &keyed("33334444")).is_none());
    }
}
