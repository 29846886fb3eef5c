//! Secret entry: the PIN for a debit card, expiry then CVN2 for a credit
//! card, keyed digit by digit into the wiped buffer and handed to the
//! matcher once complete.

use super::retry::Miss;
use super::speech::sound;
use super::{Action, Ivr, Phase};
use crate::domain::CardKind;
use crate::domain::{Cvn2, Expiry, PinDigits, Verification};

/// The secret being keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Pin,
    Expiry,
    Cvn2,
}

impl Field {
    pub(super) fn len(self) -> usize {
        match self {
            Field::Pin => 6,
            Field::Expiry => 4,
            Field::Cvn2 => 3,
        }
    }

    pub(super) fn prompt(self) -> &'static str {
        match self {
            Field::Pin => "enter-pin",
            Field::Expiry => "enter-expiry",
            Field::Cvn2 => "enter-cvn2",
        }
    }
}

impl Ivr {
    /// The first secret the card asks for.
    pub(super) fn first_field(&self) -> Field {
        match self.call.card_kind {
            CardKind::Credit => Field::Expiry,
            CardKind::Debit | CardKind::Unknown => Field::Pin,
        }
    }

    /// A key pressed while a secret is keyed: `*` starts the entry over, `#`
    /// after some digits (an entry ended short) is a failed attempt, a digit
    /// is kept until the field is complete. (`#` with nothing keyed never
    /// gets here: `on_digit` ignores it.)
    pub(super) fn on_entry_digit(&mut self, field: Field, c: char, out: &mut Vec<Action>) {
        match c {
            '*' => {
                self.buf.clear();
                self.arm_input_timer(out);
            }
            '#' => self.miss(Miss::Invalid, out),
            d => {
                self.buf.push(d as u8);
                if self.buf.len() >= field.len() {
                    self.complete(field, out);
                } else {
                    self.arm_input_timer(out);
                }
            }
        }
    }

    fn complete(&mut self, field: Field, out: &mut Vec<Action>) {
        match field {
            Field::Pin => match self.buf.take(PinDigits::parse) {
                Some(pin) => self.submit(Verification::Pin(pin), out),
                None => self.miss(Miss::Invalid, out),
            },
            Field::Expiry => {
                let today = self.call.today;
                match self.buf.take(Expiry::parse) {
                    Some(e) if e.month_ok() && !e.is_past(today) => {
                        self.expiry = Some(e);
                        self.begin_entry(Field::Cvn2, Vec::new(), out);
                    }
                    _ => self.miss(Miss::Invalid, out),
                }
            }
            Field::Cvn2 => match (self.buf.take(Cvn2::parse), self.expiry.take()) {
                (Some(cvn2), Some(expiry)) => self.submit(Verification::Card { expiry, cvn2 }, out),
                // No expiry kept (cannot happen): ask for the card details again.
                _ => self.begin_entry(Field::Expiry, vec![sound("invalid-input")], out),
            },
        }
    }

    pub(super) fn begin_entry(
        &mut self,
        field: Field,
        mut lead: Vec<String>,
        out: &mut Vec<Action>,
    ) {
        self.phase = Phase::Entry(field);
        self.attempts = 0;
        self.buf.clear();
        lead.push(sound(field.prompt()));
        self.play(lead, out);
    }

    fn submit(&mut self, verification: Verification, out: &mut Vec<Action>) {
        self.phase = Phase::Verifying;
        self.submitted = self.submitted.saturating_add(1);
        self.play(vec![sound("please-wait")], out);
        out.push(Action::Submit(verification));
    }
}
