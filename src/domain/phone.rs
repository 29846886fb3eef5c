use super::Invalid;

/// China's country calling code, as it appears in front of a mobile's 11
/// digits: `+86` (E.164 written with the international sign), `0086` (with
/// the international prefix `00` dialled from mainland China) and `86`
/// (E.164 digits without the sign, as many SIP trunks send them).
const COUNTRY_PREFIXES: [&str; 3] = ["+86", "0086", "86"];

/// China's national trunk prefix: switches present a number from another
/// numbering area with it (`0` + area code for landlines), and several
/// carriers' trunks put it in front of mobiles too (`013800138000`).
const TRUNK_PREFIX: &str = "0";

/// A mobile's 11 digits: bare, or after one of [`COUNTRY_PREFIXES`].
fn without_country_code(s: &str) -> &str {
    COUNTRY_PREFIXES
        .iter()
        .find_map(|p| s.strip_prefix(p).filter(|rest| rest.len() == 11))
        .unwrap_or(s)
}

/// A mainland China mobile number, stored as the bare 11 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// Accepts a mainland mobile number, `1[3-9]` and 9 more digits, with
    /// `+86`, `0086` or `86` in front of the 11 digits optional and dropped.
    ///
    /// # Errors
    /// `invalid_phone` for anything else (spaces, other countries, landlines).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bare = without_country_code(s);
        let b = bare.as_bytes();
        let ok = b.len() == 11
            && b[0] == b'1'
            && (b'3'..=b'9').contains(&b[1])
            && b.iter().all(u8::is_ascii_digit);
        if ok {
            Ok(Self(bare.to_owned()))
        } else {
            Err(Invalid::new(
                "invalid_phone",
                "phone must be a mainland China mobile number: 1[3-9] and 9 more digits, optionally after +86",
            ))
        }
    }

    /// The bare 11 digits, without a country prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// 138****8000: enough for a person to recognise their own number.
    pub fn masked(&self) -> String {
        super::mask(&self.0, 3, 4)
    }
}

/// A caller ID as a trunk presents it (ARI's `channel.caller.number`),
/// sorted into what the inbound flow and the matcher can use. The one place
/// where carriers' prefixes are taken off: both the inbound order lookup
/// and the matcher's "the call comes from the order's phone" check go
/// through [`CallerNumber::parse`].
///
/// Which prefixes, and why (after surrounding blanks are trimmed):
/// - `+86`, `0086`, `86` before the 11 digits: China's country code,
///   written E.164 style, after the international prefix `00`, or as bare
///   E.164 digits (what most SIP trunks put in `From`/`P-Asserted-Identity`);
/// - `0` before the 11 digits: the national trunk prefix, which switches
///   add to numbers from another numbering area and some trunks add to
///   mobiles (`013800138005`).
///
/// Nothing else is taken off: a number with spaces or dashes, or of
/// another country, is no mobile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerNumber {
    /// A mainland mobile: the canonical 11 digits the orders' `phone` holds.
    Mobile(Phone),
    /// A number that is no mainland mobile (a landline, another country):
    /// it is no order's phone. The digits as presented, trimmed.
    Other(String),
    /// No number: empty, or not digits (`anonymous`, `unknown`,
    /// `withheld`, `Restricted`, a SIP URI's user part that is a name).
    Withheld,
}

impl CallerNumber {
    /// Sorts a presented caller ID (see the type's docs). Never fails:
    /// whatever a trunk sends is one of the three.
    pub fn parse(presented: &str) -> Self {
        let s = presented.trim();
        let digits = s.strip_prefix('+').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Self::Withheld;
        }
        let national = without_country_code(s);
        let bare = national
            .strip_prefix(TRUNK_PREFIX)
            .filter(|rest| rest.len() == 11)
            .unwrap_or(national);
        match Phone::parse(bare) {
            Ok(p) => Self::Mobile(p),
            Err(_) => Self::Other(s.to_owned()),
        }
    }

    /// The mobile, when the caller ID is one.
    pub fn phone(&self) -> Option<&Phone> {
        match self {
            Self::Mobile(p) => Some(p),
            Self::Other(_) | Self::Withheld => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CallerNumber, Phone};

    #[test]
    fn prefixes_are_removed() {
        for input in [
            "13800138000",
            "+8613800138000",
            "008613800138000",
            "8613800138000",
        ] {
            assert_eq!(
                Phone::parse(input).unwrap().as_str(),
                "13800138000",
                "{input}"
            );
        }
    }

    #[test]
    fn non_mobile_numbers_are_refused() {
        for bad in [
            "12800138000",  // second digit 2
            "1380013800",   // 10 digits
            "138001380000", // 12 digits
            "23800138000",
            "+8612800138000",
            "+1 3800138000",
            "1380013800a",
            "",
            "+86",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masked_form() {
        assert_eq!(Phone::parse("13800138000").unwrap().masked(), "138****8000");
    }

    #[test]
    fn caller_ids_with_carriers_prefixes_are_the_mobile() {
        for presented in [
            "13800138005",
            "013800138005",    // national trunk prefix
            "+8613800138005",  // E.164
            "008613800138005", // international prefix 00, country code 86
            "8613800138005",   // E.164 digits without the sign
            " 013800138005 ",  // blanks around
        ] {
            assert_eq!(
                CallerNumber::parse(presented).phone().map(Phone::as_str),
                Some("13800138005"),
                "{presented:?}"
            );
        }
    }

    #[test]
    fn other_numbers_are_no_mobile() {
        for presented in [
            "02161234567",     // a Shanghai landline with its trunk prefix
            "+12125550100",    // another country
            "0013800138005",   // 00 then no country code
            "+86013800138005", // country code and trunk prefix together
            "12800138000",     // no mobile range
            "0",
        ] {
            assert_eq!(
                CallerNumber::parse(presented),
                CallerNumber::Other(presented.to_owned()),
                "{presented:?}"
            );
        }
    }

    #[test]
    fn withheld_caller_ids_have_no_number() {
        for presented in [
            "",
            " ",
            "anonymous",
            "Anonymous",
            "unknown",
            "withheld",
            "Restricted",
            "+",
            "138 0013 8005",
            "138-0013-8005",
            "sip:alice",
            "+86138001380O5",
        ] {
            assert_eq!(
                CallerNumber::parse(presented),
                CallerNumber::Withheld,
                "{presented:?}"
            );
        }
    }
}
