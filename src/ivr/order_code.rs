//! The order-code gate of the inbound flow (src/calls/inbound.rs): before
//! anything about an order is spoken or the order is claimed, the caller
//! keys its order code. A caller ID can be spoofed, so the code is what
//! proves the caller was told about the order; it is therefore a secret
//! here: kept in a wiped buffer ([`OrderCode`]), compared in constant time,
//! never printed, and wrong codes are limited per caller ID per day.
//!
//! [`CodeGate`] is the pure decision of what the call does next; the
//! inbound runner collects the digits, compares them with the caller's
//! orders, counts wrong codes in the store and feeds the result in.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Digits of an order code (the API's `order_code`).
pub const ORDER_CODE_LEN: usize = 8;

/// An order code as the caller keys it. Fixed-size so it never reallocates
/// and leaves copies behind; wiped on clear and on drop; `Debug` shows
/// only how many digits it holds.
#[derive(Default, Zeroize, ZeroizeOnDrop)]
pub struct OrderCode {
    digits: [u8; ORDER_CODE_LEN],
    len: usize,
}

impl OrderCode {
    /// Adds a keyed digit (`0`-`9`); anything else, or a digit past
    /// [`ORDER_CODE_LEN`], is ignored. Returns whether it was kept.
    pub fn push(&mut self, c: char) -> bool {
        if !c.is_ascii_digit() || self.len >= ORDER_CODE_LEN {
            return false;
        }
        self.digits[self.len] = c as u8;
        self.len += 1;
        true
    }

    /// Digits keyed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing keyed (yet, or since the last [`OrderCode::clear`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Wipes the digits (`*`: the caller starts over).
    pub fn clear(&mut self) {
        self.zeroize();
    }

    /// Whether the keyed digits are exactly `code`, in time that does not
    /// depend on where they differ (`subtle`); different lengths never
    /// match.
    pub fn matches(&self, code: &str) -> bool {
        bool::from(self.digits[..self.len].ct_eq(code.as_bytes()))
    }
}

impl OrderCode {
    /// The keyed digits, for the one lookup that needs them: the order a
    /// caller with no mobile caller ID names by its code (a bound query
    /// parameter, as a transfer code is). Never log, store or send them
    /// anywhere else.
    pub fn expose(&self) -> &str {
        // Only ASCII digits are ever pushed.
        std::str::from_utf8(&self.digits[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Debug for OrderCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OrderCode({} digits)", self.len)
    }
}

/// Asks for the code (first time, and after nothing was keyed).
pub const ASK: &[&str] = &["key-order-code"];
/// Asks again after a wrong code.
pub const ASK_AGAIN: &[&str] = &["order-code-wrong", "key-order-code"];
/// The last try of the call was a wrong code.
pub const WRONG_BYE: &[&str] = &["order-code-wrong", "goodbye"];
/// The call's tries ran out with nothing keyed.
pub const SILENT_BYE: &[&str] = &["goodbye"];
/// The caller ID reached the day's wrong-code limit.
pub const REFUSED: &[&str] = &["order-code-refused", "goodbye"];

/// What the runner learnt from one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateInput {
    /// No code was keyed in time.
    NothingKeyed,
    /// The code matched none of the caller's orders; `today` is the caller
    /// ID's count of wrong codes today, this one included.
    Wrong {
        /// Wrong codes from this caller ID today.
        today: u32,
    },
    /// The code is that of the caller's order at this index.
    Right(usize),
}

/// What the call does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateStep {
    /// Play these prompts (sound names) and collect a code.
    Ask(&'static [&'static str]),
    /// The caller proved the order at this index: claim it, run the IVR.
    Pass(usize),
    /// Play these prompts and hang up; no order is touched.
    End(&'static [&'static str]),
}

/// The order-code gate of one inbound call (see the module docs).
#[derive(Debug, Clone)]
pub struct CodeGate {
    /// Prompts (codes asked for) allowed in one call.
    per_call: u8,
    /// Wrong codes a caller ID may key per day.
    per_day: u32,
    asked: u8,
    done: bool,
}

impl CodeGate {
    /// A gate allowing `per_call` tries in this call and `per_day` wrong
    /// codes per caller ID per day.
    pub fn new(per_call: u8, per_day: u32) -> Self {
        Self {
            per_call: per_call.max(1),
            per_day,
            asked: 0,
            done: false,
        }
    }

    /// The first step, given the wrong codes this caller ID keyed today:
    /// refused at the limit (before any code is asked for), else asked.
    pub fn start(&mut self, wrong_today: u32) -> GateStep {
        if wrong_today >= self.per_day {
            return self.end(REFUSED);
        }
        self.ask(ASK)
    }

    /// The step after what the last prompt brought. After `Pass` or `End`
    /// the gate stays ended.
    pub fn step(&mut self, input: GateInput) -> GateStep {
        if self.done {
            return GateStep::End(SILENT_BYE);
        }
        let last = self.asked >= self.per_call;
        match input {
            GateInput::Right(i) => {
                self.done = true;
                GateStep::Pass(i)
            }
            GateInput::Wrong { today } if today >= self.per_day => self.end(REFUSED),
            GateInput::Wrong { .. } if last => self.end(WRONG_BYE),
            GateInput::Wrong { .. } => self.ask(ASK_AGAIN),
            GateInput::NothingKeyed if last => self.end(SILENT_BYE),
            GateInput::NothingKeyed => self.ask(ASK),
        }
    }

    fn ask(&mut self, prompts: &'static [&'static str]) -> GateStep {
        self.asked += 1;
        GateStep::Ask(prompts)
    }

    fn end(&mut self, prompts: &'static [&'static str]) -> GateStep {
        self.done = true;
        GateStep::End(prompts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(s: &str) -> OrderCode {
        let mut c = OrderCode::default();
        for d in s.chars() {
            c.push(d);
        }
        c
    }

    #[test]
    fn a_keyed_code_matches_only_the_same_digits() {
        assert!(keyed("12345678").matches("12345678"));
        assert!(!keyed("12345679").matches("12345678"));
        assert!(!keyed("1234567").matches("12345678"));
        assert!(!keyed("").matches("12345678"));
        assert!(!keyed("12345678").matches(""));
        // Only digits are kept, and no more than eight.
        let mut c = keyed("1234*#a5678");
        assert_eq!(c.len(), 8);
        assert!(!c.push('9'));
        assert!(c.matches("12345678"));
        c.clear();
        assert!(c.is_empty() && c.digits == [0; 8]);
    }

    #[test]
    fn a_keyed_code_never_prints() {
        let shown = format!("{:?}", keyed("24681357"));
        assert_eq!(shown, "OrderCode(8 digits)");
    }

    #[test]
    fn the_right_code_passes_and_nothing_is_said_before() {
        let mut g = CodeGate::new(3, 5);
        assert_eq!(g.start(0), GateStep::Ask(ASK));
        assert_eq!(g.step(GateInput::Right(1)), GateStep::Pass(1));
        // The only prompts before the code: none names an amount or card.
        for p in ASK.iter().chain(ASK_AGAIN) {
            assert!(!p.starts_with("confirm") && !p.starts_with("digits"), "{p}");
        }
    }

    #[test]
    fn wrong_codes_are_asked_again_until_the_calls_tries_run_out() {
        let mut g = CodeGate::new(3, 5);
        assert_eq!(g.start(0), GateStep::Ask(ASK));
        assert_eq!(
            g.step(GateInput::Wrong { today: 1 }),
            GateStep::Ask(ASK_AGAIN)
        );
        assert_eq!(g.step(GateInput::NothingKeyed), GateStep::Ask(ASK));
        assert_eq!(
            g.step(GateInput::Wrong { today: 2 }),
            GateStep::End(WRONG_BYE)
        );
        // Ended: a late code passes nothing.
        assert_eq!(g.step(GateInput::Right(0)), GateStep::End(SILENT_BYE));
    }

    #[test]
    fn silence_ends_the_call_without_a_wrong_code() {
        let mut g = CodeGate::new(2, 5);
        g.start(0);
        assert_eq!(g.step(GateInput::NothingKeyed), GateStep::Ask(ASK));
        assert_eq!(g.step(GateInput::NothingKeyed), GateStep::End(SILENT_BYE));
    }

    #[test]
    fn the_days_limit_refuses_mid_call_and_at_the_start_of_the_next() {
        let mut g = CodeGate::new(3, 5);
        assert_eq!(g.start(3), GateStep::Ask(ASK));
        assert_eq!(
            g.step(GateInput::Wrong { today: 4 }),
            GateStep::Ask(ASK_AGAIN)
        );
        assert_eq!(
            g.step(GateInput::Wrong { today: 5 }),
            GateStep::End(REFUSED)
        );
        let mut next_call = CodeGate::new(3, 5);
        assert_eq!(next_call.start(5), GateStep::End(REFUSED));
        assert_eq!(
            next_call.step(GateInput::Right(0)),
            GateStep::End(SILENT_BYE)
        );
    }

    #[test]
    fn every_gate_prompt_is_recorded_in_both_languages() {
        let tsv = include_str!("../../sounds/prompts.tsv");
        for name in [ASK, ASK_AGAIN, WRONG_BYE, SILENT_BYE, REFUSED].concat() {
            let line = tsv
                .lines()
                .find(|l| l.split('\t').next() == Some(name))
                .unwrap_or_else(|| panic!("{name} is not in prompts.tsv"));
            let texts: Vec<&str> = line.split('\t').skip(1).collect();
            assert!(
                texts.len() == 2 && texts.iter().all(|t| !t.is_empty()),
                "{line}"
            );
        }
    }
}
