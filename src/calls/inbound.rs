//! The inbound flow (DESIGN.md flow 3): the cardholder dials voicepay's
//! access number (`Stasis(app, inbound)`, dialplan/inbound.conf). The
//! caller ID, normalised to the order's phone by
//! [`CallerNumber`](crate::domain::CallerNumber) (carriers' `+86`, `0086`,
//! `86` and national trunk `0` prefixes taken off), finds that phone's
//! `pending` orders of mode `inbound` (bound payments included: they are
//! inbound orders whose card comes from the binding).
//!
//! A caller ID that is no mobile (withheld, `anonymous`, `unknown`, empty,
//! not digits, a landline) finds no order by itself: whatever
//! `require_order_code` says, the caller keys the order code
//! (`key-order-code`), which alone names the order among every pending
//! inbound order, and the call then belongs to that order whatever its
//! caller ID (`Via::InboundByCode`). Such a code is searched among every
//! order, and a landline or foreign caller ID is as easy to spoof as any, so
//! the wrong codes of all these callers count, as below, against one shared
//! count (`no-mobile`): neither withholding nor changing the number is a
//! way around the day's limit (the price: a day's flood of wrong codes
//! refuses every caller without a mobile caller ID until the next day;
//! callers from a mobile are not affected).
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
//! A node whose database does not answer (`SELECT 1`) refuses the call
//! before answering it (hang-up cause 34, SIP 503 to the carrier): nothing
//! is said and no order touched, and a dispatcher re-sends the call to
//! another cell.
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
use super::line::Line;
use super::live::{collect_code, play_prompts, Entry, Heard, Keyed};
use super::runner::CallEnd;
use super::session::run_order;
use crate::ari::{AriCommands, AriRest, Call, Event, HangupReason};
use crate::bank::shanghai_day;
use crate::domain::{CallerNumber, Phone};
use crate::ivr::order_code::{CodeGate, GateInput, GateStep, OrderCode};
use crate::matcher::{Matcher, Via};
use crate::store::{now_ms, OrderRow};
use std::sync::Arc;
use std::time::Duration;
use tracing::Span;

/// Tries the caller gets to key an order code in one call.
const CODE_ATTEMPTS: u8 = 3;

/// Whom the wrong order codes of every caller whose caller ID is no mobile
/// count against (one count for them all, see the module docs).
const NO_MOBILE: &str = "no-mobile";

/// How long the caller has to key the code: the IVR's digit timeouts
/// (`ivr.first_digit_timeout_secs`, `ivr.inter_digit_timeout_secs`).
fn code_entry<M>(desk: &Desk<M>) -> Entry {
    Entry {
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

/// One inbound call: who calls, on which line (it follows the call onto
/// a new channel, see [`Line`]), in which language.
struct Caller<'a> {
    number: String,
    line: Line<'a>,
    lang: Option<String>,
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
    // A node cut off from its database can neither find nor settle the
    // caller's order: it refuses the call unanswered (cause 34, which
    // Asterisk answers the carrier as SIP 503), so a dispatcher in front of
    // several cells re-sends it to another (README "Cells behind Kamailio").
    if !desk.store.ping().await {
        tracing::warn!("database unavailable; inbound call refused unanswered");
        if let Err(e) = desk
            .rest
            .hangup(&channel_id, HangupReason::Congestion)
            .await
        {
            tracing::debug!(error = %e, "hangup failed");
        }
        return;
    }
    if let Err(e) = desk.rest.answer(&channel_id).await {
        tracing::debug!(error = %e, "answer failed");
    }
    let mut caller = Caller {
        number,
        line: desk.line(channel_id, events),
        lang: lang.filter(|l| !l.is_empty()),
    };
    let among = match CallerNumber::parse(&caller.number) {
        CallerNumber::Mobile(p) if !desk.settings.inbound.require_order_code => {
            let Some(order) = by_caller_id(desk, &p, &mut caller).await else {
                return;
            };
            return pay(desk, &order, Via::Inbound { caller: p }, &mut caller).await;
        }
        CallerNumber::Mobile(p) => Among::Phone(p),
        CallerNumber::Other(_) | CallerNumber::Withheld => Among::Anyone,
    };
    let Some(order) = gated(desk, &among, &mut caller).await else {
        return;
    };
    let via = match among {
        Among::Phone(p) => Via::Inbound { caller: p },
        Among::Anyone => Via::InboundByCode,
    };
    pay(desk, &order, via, &mut caller).await;
}

/// Where the order-code gate looks for the keyed code's order, and whom
/// its wrong codes count against.
enum Among {
    /// A mobile caller ID: its own pending orders (the caller ID narrows,
    /// the code decides); wrong codes count against the phone.
    Phone(Phone),
    /// A caller ID that is no mobile (withheld, a landline): every pending
    /// inbound order, by its code; wrong codes count against [`NO_MOBILE`].
    Anyone,
}

impl Among {
    /// The key of the day's wrong-code count.
    fn caller(&self) -> &str {
        match self {
            Among::Phone(p) => p.as_str(),
            Among::Anyone => NO_MOBILE,
        }
    }

    /// The caller as logs show it.
    fn shown(&self) -> String {
        match self {
            Among::Phone(p) => p.masked(),
            Among::Anyone => NO_MOBILE.to_owned(),
        }
    }
}

/// The gate of `inbound.require_order_code`: the order whose code the
/// caller keyed, or None once the call has been ended (or is gone) with no
/// order touched.
async fn gated<M>(desk: &Desk<M>, among: &Among, caller: &mut Caller<'_>) -> Option<OrderRow> {
    let day = shanghai_day(time::OffsetDateTime::now_utc()).to_string();
    let per_day = desk.settings.inbound.wrong_codes_per_day;
    let wrong_today = match desk.store.order_code_tries(among.caller(), &day).await {
        Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "wrong order code count unavailable");
            say_and_hang_up(desk, caller, &["service-unavailable"]).await;
            return None;
        }
    };
    let mut orders = match among {
        Among::Phone(p) => callers_orders(desk, p).await,
        Among::Anyone => {
            tracing::info!(caller = %among.shown(), "inbound call; the order code names the order");
            Vec::new()
        }
    };
    let mut gate = CodeGate::new(CODE_ATTEMPTS, per_day);
    let mut next = gate.start(wrong_today);
    let mut n = 0;
    loop {
        let prompt = match next {
            GateStep::Pass(i) => return Some(orders.swap_remove(i)),
            GateStep::End(prompts) => {
                if wrong_today >= per_day {
                    tracing::info!(caller = %among.shown(), "caller ID over the day's wrong order codes");
                }
                tracing::info!(caller = %among.shown(), "inbound call ended at the order code; no order claimed");
                say_and_hang_up(desk, caller, prompts).await;
                return None;
            }
            GateStep::Ask(prompt) => prompt,
        };
        n += 1;
        let keyed = collect_code(
            &desk.rest,
            &mut caller.line,
            n,
            prompt,
            caller.lang.as_deref(),
            code_entry(desk),
        )
        .await;
        let input = match keyed {
            Keyed::Gone => {
                tracing::info!("inbound caller hung up at the order code; no order claimed");
                return None;
            }
            Keyed::Timeout => GateInput::NothingKeyed,
            Keyed::Code(code) => match find(desk, among, &mut orders, &code).await {
                Some(i) => GateInput::Right(i),
                None => wrong_code(desk, among, &day, per_day).await,
            },
        };
        next = gate.step(input);
    }
}

/// The index in `orders` of the order whose code the caller keyed: among
/// the phone's orders, or (no mobile caller ID) the one pending inbound
/// order with that code, which then becomes `orders`' only entry.
async fn find<M>(
    desk: &Desk<M>,
    among: &Among,
    orders: &mut Vec<OrderRow>,
    code: &OrderCode,
) -> Option<usize> {
    if let Among::Phone(_) = among {
        return pick(orders, code);
    }
    let found = desk
        .store
        .pending_inbound_order_by_code(code.expose(), now_ms())
        .await;
    match found {
        Ok(Some(order)) => {
            *orders = vec![order];
            Some(0)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "order code lookup failed");
            None
        }
    }
}

/// Counts a wrong code against the caller ID; a count that cannot be
/// written ends the gate as the limit does (fail closed).
async fn wrong_code<M>(desk: &Desk<M>, among: &Among, day: &str, per_day: u32) -> GateInput {
    let today = match desk
        .store
        .record_wrong_order_code(among.caller(), day, now_ms())
        .await
    {
        Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count a wrong order code");
            per_day
        }
    };
    tracing::info!(caller = %among.shown(), today, "wrong order code");
    GateInput::Wrong { today }
}

/// `inbound.require_order_code = false` and a mobile caller ID: the
/// caller's one pending order, or the one whose code they key among
/// several; None once the call has been ended.
async fn by_caller_id<M>(
    desk: &Desk<M>,
    phone: &Phone,
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
async fn pay<M: Matcher + 'static>(
    desk: &Desk<M>,
    order: &OrderRow,
    via: Via,
    caller: &mut Caller<'_>,
) {
    record_order(&Span::current(), &order.id);
    let claimed = desk
        .claim_incoming(&order.id, caller.line.id(), "inbound call")
        .await;
    let Some(order) = claimed else {
        say_and_hang_up(desk, caller, &["no-pending-order", "goodbye"]).await;
        return;
    };
    tracing::info!("inbound call claimed the order");
    run_order(desk, &order, &via, &mut caller.line, CallEnd::Hangup).await;
    desk.release(caller.line.id()).await;
}

/// The `pending` inbound orders of the calling mobile.
async fn callers_orders<M>(desk: &Desk<M>, phone: &Phone) -> Vec<OrderRow> {
    let orders = match desk
        .store
        .pending_inbound_orders(phone.as_str(), now_ms())
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "inbound order lookup failed");
            Vec::new()
        }
    };
    tracing::info!(caller = %phone.masked(), orders = orders.len(), "inbound call");
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
        match collect_code(rest, &mut caller.line, n, prompt, lang, entry).await {
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
    let rest = &desk.rest;
    let lang = caller.lang.as_deref();
    if play_prompts(rest, &mut caller.line, 100, prompts, lang).await == Heard::Played {
        let _ = rest.hangup(caller.line.id(), HangupReason::Normal).await;
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
