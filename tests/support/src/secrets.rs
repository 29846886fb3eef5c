//! "No secret anywhere" (DESIGN.md): a scanner that looks for the
//! secrets a test keyed or sent — PINs, expiry + CVN2, full card numbers,
//! ID numbers — in log files, database files or any byte buffer.
//!
//! What counts as a hit, and why (false positives would make the test flaky,
//! false negatives would make it useless):
//! - Digit strings match only whole: not preceded or followed by another
//!   digit, so `805137` is found in `pin=805137` or `"805137"` but not inside
//!   `18051370`. Masked forms (`622200******0017`) never match a full number.
//! - A credit card's secret is looked for as it is keyed and as it could be
//!   written: `1230123` (expiry then CVN2, the IVR's order), `1230`, `12/30`,
//!   and the CVN2 only next to a `cvn`/`cvv` label — `123` alone is far too
//!   common to mean anything.
//! - The fraction of a second in a log timestamp (`19:33:26.805137Z`) is six
//!   digits that can equal a PIN by chance; a match right after `:SS.` is a
//!   clock reading and is not reported.
//! - A card number is also looked for in groups of four (`6222 0000 …`).
//! - A random UUID (the request ids in the logs) has 4-digit groups that
//!   can equal an expiry by chance (`…-1230-…`); a match inside a
//!   UUID-shaped token is a random id and is not reported.
//!
//! Findings never quote the secret: they name its label and where it is.

use std::path::Path;

/// One kind of secret to look for.
#[derive(Debug, Clone)]
struct Needle {
    label: String,
    bytes: Vec<u8>,
    /// Only a hit within this many bytes after one of these (lowercase)
    /// labels counts, e.g. a CVN2 after `cvn`.
    after_label: Option<(&'static [&'static str], usize)>,
}

/// The secrets a test used; [`Secrets::scan`] finds them in bytes.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    needles: Vec<Needle>,
}

/// A secret found: which one (its label, never its value), where, and the
/// text around it with every digit masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub source: String,
    pub label: String,
    pub offset: usize,
    pub context: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at byte {} of {}: …{}…",
            self.label, self.offset, self.source, self.context
        )
    }
}

impl Secrets {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, label: String, value: &str) {
        self.needles.push(Needle {
            label,
            bytes: value.as_bytes().to_vec(),
            after_label: None,
        });
    }

    /// A PIN (a right one or a wrong one the handset keyed).
    pub fn pin(mut self, pin: &str) -> Self {
        self.add(format!("PIN {}**", &pin[..pin.len().min(2)]), pin);
        self
    }

    /// A credit card's expiry (MMYY, as keyed) and CVN2.
    pub fn expiry_cvn2(mut self, mmyy: &str, cvn2: &str) -> Self {
        self.add("expiry+CVN2 as keyed".into(), &format!("{mmyy}{cvn2}"));
        self.add("expiry MMYY".into(), mmyy);
        if mmyy.len() == 4 {
            self.add(
                "expiry MM/YY".into(),
                &format!("{}/{}", &mmyy[..2], &mmyy[2..]),
            );
        }
        self.needles.push(Needle {
            label: "CVN2 after its label".into(),
            bytes: cvn2.as_bytes().to_vec(),
            after_label: Some((&["cvn", "cvv", "cvc", "security code"], 16)),
        });
        self
    }

    /// A full card number, whole or in groups of four.
    pub fn card(mut self, pan: &str) -> Self {
        let masked = format!("{}…{}", &pan[..6], &pan[pan.len() - 4..]);
        self.add(format!("card number {masked}"), pan);
        let grouped: Vec<&str> = pan
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("digits"))
            .collect();
        self.add(
            format!("card number {masked} in groups"),
            &grouped.join(" "),
        );
        self
    }

    /// An ISO 8583 PIN block (F52: 8 bytes, enciphered or clear), as its
    /// bytes and as hex in either case.
    pub fn pin_block(mut self, label: &str, block: &[u8; 8]) -> Self {
        self.add(format!("{label} (hex)"), &hex::encode_upper(block));
        self.add(format!("{label} (hex)"), &hex::encode(block));
        self.needles.push(Needle {
            label: format!("{label} (bytes)"),
            bytes: block.to_vec(),
            after_label: None,
        });
        self
    }

    /// Any other secret text, e.g. a whole F61 (ID type, ID number, CVN2).
    pub fn text(mut self, label: &str, value: &str) -> Self {
        self.add(label.to_owned(), value);
        self
    }

    /// A cardholder ID number (encrypted at rest, masked in logs).
    pub fn id_number(mut self, id: &str) -> Self {
        self.add(format!("ID number {}…", &id[..6]), id);
        self
    }

    /// Every secret in `bytes`; `source` names them in the findings.
    pub fn scan(&self, source: &str, bytes: &[u8]) -> Vec<Finding> {
        let mut found = Vec::new();
        for needle in &self.needles {
            let n = &needle.bytes;
            if n.is_empty() || bytes.len() < n.len() {
                continue;
            }
            let mut at = 0;
            while let Some(pos) = find(&bytes[at..], n) {
                let start = at + pos;
                let end = start + n.len();
                at = start + 1;
                if !whole(bytes, start, end)
                    || clock_fraction(bytes, start)
                    || in_uuid(bytes, start, end)
                {
                    continue;
                }
                if let Some((labels, window)) = needle.after_label {
                    if !labelled(bytes, start, labels, window) {
                        continue;
                    }
                }
                found.push(Finding {
                    source: source.to_string(),
                    label: needle.label.clone(),
                    offset: start,
                    context: masked_context(bytes, start, end),
                });
            }
        }
        found
    }

    /// Scans a file from byte `from` on (what was written since a test
    /// began); a missing file has nothing in it.
    pub fn scan_file(&self, path: &Path, from: u64) -> Vec<Finding> {
        let Ok(bytes) = std::fs::read(path) else {
            return Vec::new();
        };
        let from = usize::try_from(from).unwrap_or(0);
        // A file that shrank was rotated or truncated: read all of it.
        let from = if from <= bytes.len() { from } else { 0 };
        self.scan(&path.display().to_string(), &bytes[from..])
            .into_iter()
            .map(|mut f| {
                f.offset += from;
                f
            })
            .collect()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The match is a whole number: no digit right before or after it.
fn whole(bytes: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(end).copied();
    !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
}

/// The match lies inside a token shaped like a UUID
/// (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits).
fn in_uuid(bytes: &[u8], start: usize, end: usize) -> bool {
    let part = |b: u8| b.is_ascii_hexdigit() || b == b'-';
    let mut from = start;
    while from > 0 && part(bytes[from - 1]) {
        from -= 1;
    }
    let mut to = end;
    while to < bytes.len() && part(bytes[to]) {
        to += 1;
    }
    let token = &bytes[from..to];
    token.len() == 36
        && token.iter().enumerate().all(|(i, &b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// The match follows `:SS.`, the seconds of a clock reading.
fn clock_fraction(bytes: &[u8], start: usize) -> bool {
    start >= 4
        && bytes[start - 1] == b'.'
        && bytes[start - 2].is_ascii_digit()
        && bytes[start - 3].is_ascii_digit()
        && bytes[start - 4] == b':'
}

/// One of `labels` ends at most `window` bytes before `start`.
fn labelled(bytes: &[u8], start: usize, labels: &[&str], window: usize) -> bool {
    let from = start.saturating_sub(window + 16);
    let before = String::from_utf8_lossy(&bytes[from..start]).to_lowercase();
    labels.iter().any(|l| {
        before
            .rfind(l)
            .is_some_and(|i| before.len() - (i + l.len()) <= window)
    })
}

/// Up to 40 bytes either side of a hit, printable, with digits shown as `#`
/// so a finding never repeats the secret it found.
fn masked_context(bytes: &[u8], start: usize, end: usize) -> String {
    let from = start.saturating_sub(40);
    let to = (end + 40).min(bytes.len());
    bytes[from..to]
        .iter()
        .map(|&b| match b {
            b'0'..=b'9' => '#',
            0x20..=0x7e => b as char,
            _ => '.',
        })
        .collect()
}
