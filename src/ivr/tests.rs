//! The state machine call by call, with a fake clock: each test plays the
//! events a real call would produce and asserts the exact actions, so the
//! media lists are what a caller would hear.

use super::*;
use crate::domain::{Cvn2, Expiry, PinDigits, Verification, YearMonth};

const MAX: TimerId = TimerId(1);

fn info(kind: CardKind) -> CallInfo {
    CallInfo {
        language: Language::En,
        amount_fen: 12345,
        card_last4: "0017".into(),
        card_kind: kind,
        bound: false,
        today: YearMonth {
            year: 2025,
            month: 6,
        },
    }
}

/// Media URIs from short names: `number:…` as is, others as voicepay prompts.
fn media(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| {
            if n.starts_with("number:") {
                n.to_string()
            } else {
                sound(n)
            }
        })
        .collect()
}

fn play(id: &str, names: &[&str]) -> Action {
    Action::Play {
        playback_id: id.into(),
        media: media(names),
    }
}

fn stop(id: &str) -> Action {
    Action::StopPlayback {
        playback_id: id.into(),
    }
}

fn start(t: u64, secs: u64) -> Action {
    Action::StartTimer {
        timer: TimerId(t),
        after: Duration::from_secs(secs),
    }
}

fn cancel(t: u64) -> Action {
    Action::CancelTimer { timer: TimerId(t) }
}

fn pin(s: &str) -> Action {
    Action::Submit(Verification::Pin(PinDigits::parse(s).unwrap()))
}

fn failed(code: ResultCode) -> Action {
    Action::Finish(CallOutcome::Failed(code))
}

const CONFIRM: [&str; 11] = [
    "confirm-paying",
    "number:123",
    "units/yuan",
    "number:45",
    "units/fen",
    "confirm-card-ending",
    "digits/0",
    "digits/0",
    "digits/1",
    "digits/7",
    "confirm-press",
];

/// One call and its fake clock.
struct Call {
    ivr: Ivr,
    now: Duration,
}

impl Call {
    fn new(info: CallInfo) -> Self {
        Self {
            ivr: Ivr::new(IvrConfig::default(), info),
            now: Duration::ZERO,
        }
    }

    fn ev(&mut self, event: Event) -> Vec<Action> {
        self.ivr.step(event, self.now)
    }

    fn key(&mut self, digits: &str) -> Vec<Action> {
        digits
            .chars()
            .flat_map(|c| self.ev(Event::Digit(c)))
            .collect()
    }

    fn done(&mut self, id: &str) -> Vec<Action> {
        self.ev(Event::PlaybackFinished {
            playback_id: id.into(),
        })
    }

    fn fire(&mut self, t: u64) -> Vec<Action> {
        self.ev(Event::TimerFired { timer: TimerId(t) })
    }

    fn after(&mut self, secs: u64) -> &mut Self {
        self.now += Duration::from_secs(secs);
        self
    }

    fn after_ms(&mut self, ms: u64) -> &mut Self {
        self.now += Duration::from_millis(ms);
        self
    }

    /// Keys `digits` one by one, `gap_ms` apart (the first at once), as a
    /// caller's burst; returns what each key did.
    fn burst(&mut self, digits: &str, gap_ms: u64) -> Vec<Vec<Action>> {
        digits
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i > 0 {
                    self.after_ms(gap_ms);
                }
                self.ev(Event::Digit(c))
            })
            .collect()
    }

    /// Started, confirmation heard to the end and confirmed with 1: the
    /// secret's prompt is p2; the next timer id is 3.
    fn confirmed(kind: CardKind) -> Self {
        let mut call = Self::new(info(kind));
        call.ev(Event::Start);
        call.done("p1");
        call.key("1");
        call
    }

    /// Like [`Call::confirmed`] and the secret's prompt heard to the end.
    fn at_entry(kind: CardKind) -> Self {
        let mut call = Self::confirmed(kind);
        call.done("p2");
        call
    }
}

fn submits(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Submit(_)))
        .count()
}

fn started_timers(actions: &[Action]) -> Vec<TimerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartTimer { timer, .. } => Some(*timer),
            _ => None,
        })
        .collect()
}

#[test]
fn start_plays_welcome_and_confirmation_in_one_playback() {
    let mut call = Call::new(info(CardKind::Debit));
    let mut names = vec!["welcome"];
    names.extend(CONFIRM);
    assert_eq!(call.ev(Event::Start), [start(1, 180), play("p1", &names)]);
    assert!(
        call.ev(Event::Start).is_empty(),
        "a second Start is ignored"
    );
}

#[test]
fn bound_card_confirmation_names_last_four_in_mandarin() {
    let mut call = Call::new(CallInfo {
        language: Language::Zh,
        amount_fen: 200000,
        card_last4: "1234".into(),
        bound: true,
        ..info(CardKind::Debit)
    });
    let actions = call.ev(Event::Start);
    assert_eq!(
        actions[1],
        play(
            "p1",
            &[
                "welcome",
                "confirm-paying",
                "digits/liang",
                "units/qian",
                "units/yuan",
                "units/zheng",
                "confirm-card-ending",
                "digits/yao",
                "digits/2",
                "digits/3",
                "digits/4",
                "confirm-press",
            ]
        )
    );
    call.done("p1");
    assert_eq!(call.key("1"), [cancel(2), play("p2", &["enter-pin"])]);
}

#[test]
fn debit_payment_from_start_to_hang_up() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    // The first-digit timer starts when the prompt has played, not before.
    assert_eq!(call.done("p1"), [start(2, 10)]);
    assert_eq!(call.key("1"), [cancel(2), play("p2", &["enter-pin"])]);
    assert_eq!(call.done("p2"), [start(3, 10)]);
    assert_eq!(call.key("1"), [cancel(3), start(4, 5)]);
    assert_eq!(call.key("2"), [cancel(4), start(5, 5)]);
    call.key("345");
    assert_eq!(
        call.key("6"),
        [cancel(8), play("p3", &["please-wait"]), pin("123456")]
    );
    assert!(call.done("p3").is_empty(), "no digit timer while verifying");
    assert_eq!(
        call.ev(Event::VerificationResult(Verdict::Approved)),
        [
            play("p4", &["success", "goodbye"]),
            Action::Finish(CallOutcome::Approved),
            start(9, 30)
        ]
    );
    assert_eq!(call.done("p4"), [Action::Hangup, cancel(1), cancel(9)]);
    assert!(call.ivr.is_done());
    assert!(call.ev(Event::Hangup).is_empty());
}

#[test]
fn barge_in_stops_the_prompt_and_the_digit_counts() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    // 1 during the confirmation: stop it and go on at once.
    assert_eq!(call.key("1"), [stop("p1"), play("p2", &["enter-pin"])]);
    // A late PlaybackFinished for the stopped prompt changes nothing.
    assert!(call.done("p1").is_empty());
    // A PIN digit during enter-pin stops it; no timer while it plays.
    assert_eq!(call.key("4"), [stop("p2")]);
    assert!(call.key("2").is_empty());
    // Once the prompt is over, the inter-digit timer runs (digits are kept).
    assert_eq!(call.done("p2"), [start(2, 5)]);
    assert_eq!(
        call.key("9999"),
        [
            cancel(2),
            start(3, 5),
            cancel(3),
            start(4, 5),
            cancel(4),
            start(5, 5),
            cancel(5),
            play("p3", &["please-wait"]),
            pin("429999"),
        ]
    );
}

#[test]
fn type_ahead_six_digits_during_the_prompt_complete_the_pin_without_timers() {
    let mut call = Call::new(info(CardKind::Debit));
    let mut all = call.ev(Event::Start);
    all.extend(call.key("1123456"));
    assert_eq!(started_timers(&all), [MAX], "only the max-call timer");
    assert_eq!(
        all[2..],
        [
            stop("p1"),
            play("p2", &["enter-pin"]),
            stop("p2"),
            play("p3", &["please-wait"]),
            pin("123456"),
        ]
    );
}

#[test]
fn first_digit_timeout_reprompts_with_tries_left() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.after(10);
    assert_eq!(
        call.fire(3),
        [play(
            "p3",
            &[
                "invalid-input",
                "tries-you-have",
                "number:2",
                "tries-left",
                "enter-pin"
            ]
        )]
    );
    assert_eq!(call.done("p3"), [start(4, 10)]);
}

#[test]
fn inter_digit_timeout_counts_an_attempt_and_clears_the_digits() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("123");
    assert_eq!(
        call.fire(6),
        [play(
            "p3",
            &[
                "invalid-input",
                "tries-you-have",
                "number:2",
                "tries-left",
                "enter-pin"
            ]
        )]
    );
    assert_eq!(call.ivr.buf.raw(), &[0u8; 8]);
    let actions = call.key("654321");
    assert_eq!(actions.last(), Some(&pin("654321")));
}

#[test]
fn three_timeouts_end_the_call_with_input_timeout() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.fire(3);
    call.done("p3");
    assert_eq!(
        call.fire(4),
        [play(
            "p4",
            &[
                "invalid-input",
                "tries-you-have",
                "number:1",
                "tries-left",
                "enter-pin"
            ]
        )]
    );
    call.done("p4");
    assert_eq!(
        call.fire(5),
        [
            play("p5", &["fail-input_timeout", "goodbye"]),
            failed(ResultCode::InputTimeout),
            start(6, 30),
        ]
    );
    assert_eq!(call.done("p5"), [Action::Hangup, cancel(1), cancel(6)]);
}

#[test]
fn three_invalid_confirmation_keys_end_the_call() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    call.done("p1");
    let mut again = vec!["invalid-input", "tries-you-have", "number:2", "tries-left"];
    again.extend(CONFIRM);
    assert_eq!(call.key("5"), [cancel(2), play("p2", &again)]);
    // 9 and * are just wrong keys here, and barge in like any other; each
    // comes after a pause longer than the burst gap, so each is an answer.
    assert_eq!(call.after(2).key("9")[..1], [stop("p2")]);
    assert_eq!(
        call.after(2).key("*"),
        [
            stop("p3"),
            play("p4", &["invalid-input", "fail-input_timeout", "goodbye"]),
            failed(ResultCode::InputTimeout),
            start(3, 30),
        ]
    );
}

/// "Invalid input, N tries left" and the confirmation again.
fn confirm_again(tries_left: &str) -> Vec<&str> {
    let mut again = vec!["invalid-input", "tries-you-have", tries_left, "tries-left"];
    again.extend(CONFIRM);
    again
}

#[test]
fn a_burst_of_keys_at_the_confirmation_costs_one_try_and_the_call_goes_on() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    call.done("p1");
    // A PIN keyed too early: six keys 200 ms apart. The first is the wrong
    // answer; the other five are the same entry: no try, no barge-in.
    let keys = call.burst("987654", 200);
    assert_eq!(keys[0], [cancel(2), play("p2", &confirm_again("number:2"))]);
    assert!(keys[1..].iter().all(Vec::is_empty), "{keys:?}");
    // The caller hears the prompt to its end; the step goes on.
    assert_eq!(call.done("p2"), [start(3, 10)]);
    assert_eq!(call.ivr.attempts, 1);
    // A second wrong key after a pause is a second try, and says so.
    assert_eq!(
        call.after(3).key("5"),
        [cancel(3), play("p3", &confirm_again("number:1"))]
    );
    assert_eq!(call.ivr.attempts, 2);
}

#[test]
fn a_1_after_the_burst_gap_confirms_even_during_the_invalid_prompt() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    call.done("p1");
    call.burst("987654", 200);
    // Within the gap of the burst's last key a 1 is still that entry…
    assert!(call.after_ms(1000).key("1").is_empty());
    // …a 1 a whole gap (1500 ms) after the last key is an answer: it cuts
    // the "invalid input" prompt short and asks for the PIN.
    assert_eq!(
        call.after_ms(1500).key("1"),
        [stop("p2"), play("p3", &["enter-pin"])]
    );
    let actions = call.key("123456");
    assert_eq!(actions.last(), Some(&pin("123456")));
}

#[test]
fn two_wrong_keys_apart_at_the_confirmation_cost_two_tries() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    call.done("p1");
    assert_eq!(
        call.key("3"),
        [cancel(2), play("p2", &confirm_again("number:2"))]
    );
    assert_eq!(
        call.after_ms(1500).key("4"),
        [stop("p2"), play("p3", &confirm_again("number:1"))]
    );
}

#[test]
fn a_burst_on_the_last_try_at_the_confirmation_ends_the_call() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    call.done("p1");
    call.after(10).fire(2);
    call.done("p2");
    call.after(10).fire(3);
    call.done("p3");
    let keys = call.burst("987654", 200);
    assert_eq!(
        keys[0],
        [
            cancel(4),
            play("p4", &["invalid-input", "fail-input_timeout", "goodbye"]),
            failed(ResultCode::InputTimeout),
            start(5, 30),
        ]
    );
    assert!(keys[1..].iter().all(Vec::is_empty), "{keys:?}");
    assert_eq!(call.done("p4"), [Action::Hangup, cancel(1), cancel(5)]);
}

#[test]
fn max_call_timer_ends_the_call_like_a_timeout() {
    let mut call = Call::confirmed(CardKind::Debit);
    call.after(180);
    assert_eq!(
        call.fire(1),
        [
            stop("p2"),
            play("p3", &["fail-input_timeout", "goodbye"]),
            failed(ResultCode::InputTimeout),
            start(3, 30),
        ]
    );
}

#[test]
fn max_call_is_enforced_by_the_clock_if_its_timer_is_lost() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.after(179);
    assert_eq!(call.key("1"), [cancel(3), start(4, 5)]);
    call.after(1);
    assert_eq!(
        call.key("2"),
        [
            cancel(4),
            play("p3", &["fail-input_timeout", "goodbye"]),
            failed(ResultCode::InputTimeout),
            start(5, 30),
        ]
    );
}

#[test]
fn a_late_max_call_timer_does_not_cut_the_goodbye() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.after(181);
    assert_eq!(
        call.key("1")[1],
        play("p3", &["fail-input_timeout", "goodbye"])
    );
    assert!(call.fire(1).is_empty());
    assert_eq!(call.done("p3"), [Action::Hangup, cancel(4)]);
}

#[test]
fn max_call_during_verification_waits_for_the_bank() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("111111");
    call.after(200);
    assert!(call.fire(1).is_empty());
    let actions = call.ev(Event::VerificationResult(Verdict::WrongSecret {
        tries_left: 2,
    }));
    assert_eq!(
        actions[..3],
        [
            stop("p3"),
            play(
                "p4",
                &["fail-wrong_secret", "fail-input_timeout", "goodbye"]
            ),
            failed(ResultCode::InputTimeout),
        ]
    );

    let mut call = Call::at_entry(CardKind::Debit);
    call.key("111111");
    call.after(200).fire(1);
    let actions = call.ev(Event::VerificationResult(Verdict::Approved));
    assert_eq!(actions[2], Action::Finish(CallOutcome::Approved));
}

#[test]
fn star_clears_the_digits() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("123");
    // Back to an empty entry: the first-digit timer again.
    assert_eq!(call.key("*"), [cancel(6), start(7, 10)]);
    assert_eq!(call.ivr.buf.raw(), &[0u8; 8]);
    assert_eq!(call.key("654321").last(), Some(&pin("654321")));
}

#[test]
fn hash_ends_early_and_a_short_pin_is_invalid() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("123");
    assert_eq!(
        call.key("#"),
        [
            cancel(6),
            play(
                "p3",
                &[
                    "invalid-input",
                    "tries-you-have",
                    "number:2",
                    "tries-left",
                    "enter-pin"
                ]
            )
        ]
    );
    assert_eq!(call.ivr.buf.raw(), &[0u8; 8]);
    // A second short PIN is the second miss.
    call.key("9");
    assert_eq!(
        call.key("#")[0],
        play(
            "p4",
            &[
                "invalid-input",
                "tries-you-have",
                "number:1",
                "tries-left",
                "enter-pin"
            ]
        )
    );
}

#[test]
fn a_hash_with_nothing_keyed_is_ignored_at_every_step() {
    // The inbound caller keyed `{code}#`: the code was taken at its 8th
    // digit and the `#` reaches the confirmation while it plays.
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    assert!(call.key("#").is_empty(), "no barge-in, no invalid input");
    // After the confirmation has played: the first-digit timer keeps running.
    assert_eq!(call.done("p1"), [start(2, 10)]);
    assert!(call.key("##").is_empty());
    // `1#`: the `#` arrives during enter-pin and leaves it playing.
    assert_eq!(call.key("1"), [cancel(2), play("p2", &["enter-pin"])]);
    assert!(call.key("#").is_empty());
    assert_eq!(call.done("p2"), [start(3, 10)]);
    // The PIN and its `#`: submitted once, the `#` ignored while verifying.
    let all = call.key("805137#");
    assert_eq!(all.last(), Some(&pin("805137")));
    assert_eq!(submits(&all), 1);
    // A wrong PIN: its re-prompt is not cut by a `#`, and the tries said
    // are the bank's, with no step attempt used up.
    call.done("p3");
    let retry = call.ev(Event::VerificationResult(Verdict::WrongSecret {
        tries_left: 2,
    }));
    assert_eq!(retry.len(), 1);
    assert!(call.key("#").is_empty());
    assert_eq!(call.ivr.attempts, 0);
    assert_eq!(call.key("805137").last(), Some(&pin("805137")));
}

#[test]
fn a_hash_after_expiry_and_cvn2_is_no_error() {
    // The credit card: `1`, `MMYY#`, `CVN2#`, each entry complete at its
    // length; every prompt played is the one a caller expects.
    let mut call = Call::new(info(CardKind::Credit));
    let mut all = call.ev(Event::Start);
    all.extend(call.done("p1"));
    all.extend(call.key("1#"));
    all.extend(call.done("p2"));
    all.extend(call.key("1227#"));
    all.extend(call.done("p3"));
    all.extend(call.key("123#"));
    all.extend(call.done("p4"));
    all.extend(call.ev(Event::VerificationResult(Verdict::Approved)));
    let heard: Vec<&Vec<String>> = all
        .iter()
        .filter_map(|a| match a {
            Action::Play { media, .. } => Some(media),
            _ => None,
        })
        .collect();
    let mut first = media(&["welcome"]);
    first.extend(media(&CONFIRM));
    assert_eq!(
        heard,
        [
            &first,
            &media(&["enter-expiry"]),
            &media(&["enter-cvn2"]),
            &media(&["please-wait"]),
            &media(&["success", "goodbye"]),
        ]
    );
    assert!(
        !all.iter().any(|a| matches!(a, Action::StopPlayback { .. })),
        "no prompt was cut: {all:?}"
    );
    assert_eq!(submits(&all), 1);
    assert!(all.contains(&Action::Finish(CallOutcome::Approved)));
}

#[test]
fn a_hash_during_the_cvn2_prompt_leaves_it_playing() {
    // `MMYY#` typed ahead: the `#` arrives while enter-cvn2 plays.
    let mut call = Call::at_entry(CardKind::Credit);
    assert_eq!(call.key("1227").last(), Some(&play("p3", &["enter-cvn2"])));
    assert!(call.key("#").is_empty());
    assert_eq!(call.done("p3"), [start(7, 10)]);
    // A `#` after some CVN2 digits still ends a short entry: invalid.
    call.key("12");
    assert_eq!(
        call.key("#")[1],
        play(
            "p4",
            &[
                "invalid-input",
                "tries-you-have",
                "number:2",
                "tries-left",
                "enter-cvn2"
            ]
        )
    );
}

#[test]
fn hang_up_mid_pin_finishes_without_submitting() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("987");
    let actions = call.ev(Event::Hangup);
    assert_eq!(
        actions,
        [failed(ResultCode::CallerHungUp), cancel(6), cancel(1)]
    );
    assert_eq!(call.ivr.buf.raw(), &[0u8; 8]);
    assert!(!format!("{:?}", call.ivr).contains("987"));
    // Nothing more happens, whatever arrives late.
    assert!(call.key("654").is_empty());
    assert!(call.fire(5).is_empty());
    assert!(call.ev(Event::Hangup).is_empty());
    assert!(call.ivr.is_done());
}

#[test]
fn hang_up_while_verifying_leaves_the_outcome_to_the_bank() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("123456");
    assert_eq!(
        call.ev(Event::Hangup),
        [Action::Finish(CallOutcome::HungUpAwaitingBank), cancel(1)]
    );
    assert!(call
        .ev(Event::VerificationResult(Verdict::Approved))
        .is_empty());
}

#[test]
fn hang_up_after_the_outcome_does_not_finish_twice() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    call.key("2");
    assert_eq!(call.ev(Event::Hangup), [cancel(1), cancel(2)]);
}

#[test]
fn credit_card_expiry_then_cvn2() {
    let mut call = Call::new(info(CardKind::Credit));
    call.ev(Event::Start);
    call.done("p1");
    assert_eq!(call.key("1"), [cancel(2), play("p2", &["enter-expiry"])]);
    call.done("p2");
    let actions = call.key("1227");
    assert_eq!(actions.last(), Some(&play("p3", &["enter-cvn2"])));
    call.done("p3");
    let actions = call.key("123");
    assert_eq!(
        actions[actions.len() - 2..],
        [
            play("p4", &["please-wait"]),
            Action::Submit(Verification::Card {
                expiry: Expiry::parse("1227").unwrap(),
                cvn2: Cvn2::parse("123").unwrap(),
            }),
        ]
    );
}

#[test]
fn expiry_month_13_and_past_expiry_are_invalid() {
    let reprompt = |id: &str, n: &str| {
        play(
            id,
            &[
                "invalid-input",
                "tries-you-have",
                n,
                "tries-left",
                "enter-expiry",
            ],
        )
    };
    let mut call = Call::at_entry(CardKind::Credit);
    assert_eq!(call.key("1327").last(), Some(&reprompt("p3", "number:2")));
    // May 2025 is before June 2025; the current month is still good.
    assert_eq!(call.key("0525").last(), Some(&reprompt("p4", "number:1")));
    assert_eq!(call.key("0625"), [stop("p4"), play("p5", &["enter-cvn2"])]);
    assert_eq!(call.ivr.phase, Phase::Entry(Field::Cvn2));
}

#[test]
fn wrong_secret_then_right_secret_in_one_call() {
    let mut call = Call::at_entry(CardKind::Debit);
    let mut all = call.key("111111");
    call.done("p3");
    let actions = call.ev(Event::VerificationResult(Verdict::WrongSecret {
        tries_left: 2,
    }));
    assert_eq!(
        actions,
        [play(
            "p4",
            &[
                "fail-wrong_secret",
                "tries-you-have",
                "number:2",
                "tries-left",
                "enter-pin"
            ]
        )]
    );
    all.extend(actions);
    all.extend(call.key("123456"));
    all.extend(call.ev(Event::VerificationResult(Verdict::Approved)));
    assert_eq!(submits(&all), 2);
    assert!(all.contains(&pin("111111")) && all.contains(&pin("123456")));
    assert!(all.contains(&Action::Finish(CallOutcome::Approved)));
    // The please-wait still playing is cut short for the result.
    assert!(all.contains(&stop("p5")));
}

#[test]
fn wrong_secret_for_a_credit_card_asks_for_the_expiry_again() {
    let mut call = Call::at_entry(CardKind::Credit);
    call.key("1227123");
    let actions = call.ev(Event::VerificationResult(Verdict::WrongSecret {
        tries_left: 1,
    }));
    assert_eq!(
        actions[1],
        play(
            "p5",
            &[
                "fail-wrong_secret",
                "tries-you-have",
                "number:1",
                "tries-left",
                "enter-expiry"
            ]
        )
    );
}

#[test]
fn wrong_secret_exhausted_ends_the_call() {
    // The bank allows more than the call does: the call's 3 tries win.
    let mut call = Call::at_entry(CardKind::Debit);
    let wrong = Verdict::WrongSecret { tries_left: 9 };
    for _ in 0..2 {
        call.key("111111");
        let actions = call.ev(Event::VerificationResult(wrong));
        assert!(matches!(&actions[1], Action::Play { media, .. } if media.len() == 5));
    }
    call.key("111111");
    let actions = call.ev(Event::VerificationResult(wrong));
    assert_eq!(
        actions[1..3],
        [
            play("p8", &["fail-wrong_secret", "goodbye"]),
            failed(ResultCode::WrongSecret),
        ]
    );

    // The bank says no tries are left (earlier calls used them).
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("111111");
    let actions = call.ev(Event::VerificationResult(Verdict::WrongSecret {
        tries_left: 0,
    }));
    assert_eq!(actions[2], failed(ResultCode::WrongSecret));
}

#[test]
fn bank_failure_codes_are_said_and_reported() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("111111");
    call.done("p3");
    let code = ResultCode::PinTriesExceeded;
    assert_eq!(
        call.ev(Event::VerificationResult(Verdict::Failed(code))),
        [
            play("p4", &["fail-pin_tries_exceeded", "goodbye"]),
            failed(code),
            start(9, 30),
        ]
    );

    // A code without a recording: goodbye only.
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("111111");
    call.done("p3");
    let code = ResultCode::MerchantCancelled;
    let actions = call.ev(Event::VerificationResult(Verdict::Failed(code)));
    assert_eq!(actions[..2], [play("p4", &["goodbye"]), failed(code)]);
}

#[test]
fn caller_presses_2_to_cancel() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    call.done("p1");
    assert_eq!(
        call.key("2"),
        [
            cancel(2),
            play("p2", &["fail-caller_cancelled", "goodbye"]),
            failed(ResultCode::CallerCancelled),
            start(3, 30),
        ]
    );
    // Keys during goodbye are ignored; the hang-up follows the prompt.
    assert!(call.key("1").is_empty());
    assert_eq!(call.done("p2"), [Action::Hangup, cancel(1), cancel(3)]);
}

#[test]
fn the_closing_prompt_has_a_time_limit() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    call.key("2");
    assert_eq!(call.fire(2), [Action::Hangup, cancel(1)]);
}

#[test]
fn stale_and_unknown_timers_are_ignored() {
    let mut call = Call::at_entry(CardKind::Debit);
    // Timer 3 (first digit) is replaced by 4 (inter-digit) on a key.
    call.key("1");
    assert!(call.fire(3).is_empty());
    assert!(call.fire(99).is_empty());
    assert_eq!(
        call.fire(4)[0].clone_media().unwrap()[0],
        sound("invalid-input")
    );
}

#[test]
fn unknown_digits_are_ignored() {
    let mut call = Call::new(info(CardKind::Debit));
    call.ev(Event::Start);
    // Not even a barge-in: DTMF A-D and garbage are not input.
    assert!(call.key("AxD ").is_empty());
    call.done("p1");
    call.key("1");
    call.done("p2");
    assert!(call.key("B").is_empty());
    assert_eq!(call.key("123456").last(), Some(&pin("123456")));
}

#[test]
fn keys_while_verifying_are_ignored() {
    let mut call = Call::at_entry(CardKind::Debit);
    call.key("123456");
    assert!(call.key("7#*").is_empty());
}

#[test]
fn debug_never_shows_keyed_digits() {
    let mut call = Call::at_entry(CardKind::Debit);
    let mut shown = Vec::new();
    for c in "987654".chars() {
        let actions = call.ev(Event::Digit(c));
        shown.push(format!("{:?} {actions:?} {:?}", Event::Digit(c), call.ivr));
    }
    let mut credit = Call::at_entry(CardKind::Credit);
    for c in "1229876".chars() {
        let actions = credit.ev(Event::Digit(c));
        shown.push(format!("{actions:?} {:?}", credit.ivr));
    }
    let all = shown.join("\n");
    assert!(all.contains("Pin(PinDigits(***))"), "{all}");
    assert!(all.contains("Expiry(***)"), "{all}");
    for secret in ["987", "876", "765", "654", "1229", "229", "298"] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
}

#[test]
fn every_prompt_played_is_recorded() {
    let tsv = include_str!("../../sounds/prompts.tsv");
    let known: Vec<&str> = tsv
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('\t').next())
        .collect();
    let mut names: Vec<&str> = ResultCode::ALL
        .into_iter()
        .filter_map(fail_prompt)
        .collect();
    names.extend([
        "welcome",
        "confirm-paying",
        "confirm-card-ending",
        "confirm-press",
        "enter-pin",
        "enter-expiry",
        "enter-cvn2",
        "invalid-input",
        "tries-you-have",
        "tries-left",
        "please-wait",
        "success",
        "goodbye",
    ]);
    for name in names {
        assert!(known.contains(&name), "{name} is not in prompts.tsv");
    }
    for code in ResultCode::ALL {
        if let Some(p) = fail_prompt(code) {
            let said = match code {
                ResultCode::IdMismatch => ResultCode::WrongSecret,
                other => other,
            };
            assert_eq!(p, format!("fail-{}", said.code()));
        }
    }
}

/// An ID mismatch is never told apart from a wrong secret on the line:
/// the same prompts, the same outcome (`wrong_secret`), whatever reaches
/// the IVR.
#[test]
fn id_mismatch_sounds_exactly_like_a_wrong_secret() {
    let ending = |verdict: Verdict| {
        let mut call = Call::at_entry(CardKind::Debit);
        call.key("111111");
        call.done("p3");
        call.ev(Event::VerificationResult(verdict))
    };
    let mismatch = ending(Verdict::Failed(ResultCode::IdMismatch));
    let wrong = ending(Verdict::Failed(ResultCode::WrongSecret));
    assert_eq!(mismatch, wrong);
    assert!(
        mismatch.contains(&failed(ResultCode::WrongSecret)),
        "{mismatch:?}"
    );
    let all = format!("{mismatch:?}");
    assert!(all.contains("fail-wrong_secret"), "{all}");
    assert!(!all.contains("id_mismatch"), "{all}");
}

impl Action {
    /// Test helper: the media of a Play.
    fn clone_media(&self) -> Option<Vec<String>> {
        match self {
            Action::Play { media, .. } => Some(media.clone()),
            _ => None,
        }
    }
}
