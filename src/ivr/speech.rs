//! How numbers are spoken: the media lists for an amount, the card's last
//! four digits and a count of tries. Pure functions, so every reading rule is
//! a unit test instead of a phone call.
//!
//! Mandarin is assembled from voicepay's own `digits/*` and `units/*` prompts
//! because Asterisk's `number:` media has no Mandarin reading; English uses
//! `number:`, which Asterisk reads with its core English sounds.

use crate::domain::Language;

/// A voicepay prompt as a media URI (`sound:voicepay/<name>`); the channel's
/// language picks the zh or en recording.
pub fn sound(name: &str) -> String {
    format!("sound:voicepay/{name}")
}

fn digit(d: u8) -> String {
    sound(&format!("digits/{d}"))
}

fn unit(name: &str) -> String {
    sound(&format!("units/{name}"))
}

/// The media that read an amount of `fen` (1/100 yuan): "一百二十三元四角五分"
/// in Mandarin, "123 yuan 45 fen" in English. Whole amounts end with 整 in
/// Mandarin. A negative amount cannot come from a valid order and is read as
/// zero rather than panicking in the middle of a call.
pub fn amount(fen: i64, lang: Language) -> Vec<String> {
    let fen = fen.max(0) as u64;
    let (yuan, cents) = (fen / 100, fen % 100);
    match lang {
        Language::En => {
            let mut out = Vec::new();
            if yuan > 0 || cents == 0 {
                out.push(format!("number:{yuan}"));
                out.push(unit("yuan"));
            }
            if cents > 0 {
                out.push(format!("number:{cents}"));
                out.push(unit("fen"));
            }
            out
        }
        Language::Zh => zh_amount(yuan, (cents / 10) as u8, (cents % 10) as u8),
    }
}

fn zh_amount(yuan: u64, jiao: u8, fen: u8) -> Vec<String> {
    let mut out = Vec::new();
    if yuan > 0 || (jiao == 0 && fen == 0) {
        out.extend(zh_integer(yuan));
        out.push(unit("yuan"));
    }
    match (jiao, fen) {
        (0, 0) => out.push(unit("zheng")),
        (0, f) => {
            // 一千元零五分: the missing jiao is spoken as 零, but not when there
            // are no yuan either (五分, not 零五分).
            if yuan > 0 {
                out.push(digit(0));
            }
            out.push(digit(f));
            out.push(unit("fen"));
        }
        (j, 0) => {
            out.push(digit(j));
            out.push(unit("jiao"));
        }
        (j, f) => {
            out.push(digit(j));
            out.push(unit("jiao"));
            out.push(digit(f));
            out.push(unit("fen"));
        }
    }
    out
}

/// A whole number in Mandarin, grouped by 万. There is no 亿 recording, so
/// from 100,000,000 the part above 万 is itself read with 万 (一万万), which
/// is understood though old-fashioned; order amounts stay far below it.
fn zh_integer(n: u64) -> Vec<String> {
    if n == 0 {
        return vec![digit(0)];
    }
    let (high, low) = (n / 10_000, n % 10_000);
    if high == 0 {
        return zh_section(low, true);
    }
    let mut out = if high == 2 {
        // 两万, while 二十二万 keeps 二.
        vec![sound("digits/liang")]
    } else {
        zh_integer_inner(high)
    };
    out.push(unit("wan"));
    if low > 0 {
        // 一万零五: a gap of zeros before the low section is one 零.
        if low < 1000 {
            out.push(digit(0));
        }
        out.extend(zh_section(low, false));
    }
    out
}

/// The part above 万, which is the start of the number: 十万, not 一十万.
fn zh_integer_inner(n: u64) -> Vec<String> {
    if n >= 10_000 {
        zh_integer(n)
    } else {
        zh_section(n, true)
    }
}

/// One group of up to four digits (1..=9999). `leading` says the group starts
/// the number, where 10-19 is read 十X rather than 一十X. Zeros at the start
/// of a non-leading group are the caller's 零; inner gaps become one 零 here.
fn zh_section(n: u64, leading: bool) -> Vec<String> {
    const UNITS: [Option<&str>; 4] = [Some("qian"), Some("bai"), Some("shi"), None];
    let digits = [n / 1000, n / 100 % 10, n / 10 % 10, n % 10].map(|d| d as u8);
    let mut out = Vec::new();
    let mut started = false;
    let mut zero_gap = false;
    for (pos, (&d, unit_name)) in digits.iter().zip(UNITS).enumerate() {
        if d == 0 {
            zero_gap = started;
            continue;
        }
        if zero_gap {
            out.push(digit(0));
            zero_gap = false;
        }
        let tens_at_start = pos == 2 && !started && leading && d == 1;
        if d == 2 && pos < 2 {
            // 两百, 两千 (prompts.tsv: digits/liang before bai/qian/wan).
            out.push(sound("digits/liang"));
        } else if !tens_at_start {
            out.push(digit(d));
        }
        if let Some(name) = unit_name {
            out.push(unit(name));
        }
        started = true;
    }
    out
}

/// The media that read a string of digits one by one, e.g. the card's last
/// four. Mandarin says 幺 for 1, as banks and phone numbers do, so it cannot
/// be mistaken for 七 on a poor line. Anything but 0-9 is skipped.
pub fn digits(s: &str, lang: Language) -> Vec<String> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| match (lang, b) {
            (Language::Zh, b'1') => sound("digits/yao"),
            (_, b) => digit(b - b'0'),
        })
        .collect()
}

/// The media for a small count ("you have N tries left"): Mandarin says 两次,
/// not 二次; English uses Asterisk's `number:`.
pub fn count(n: u32, lang: Language) -> Vec<String> {
    match lang {
        Language::En => vec![format!("number:{n}")],
        Language::Zh if n == 2 => vec![sound("digits/liang")],
        Language::Zh => zh_integer(u64::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders zh media back to characters so the expected readings stay
    /// readable in the tests.
    fn zh(fen: i64) -> String {
        amount(fen, Language::Zh)
            .iter()
            .map(|m| {
                let name = m.strip_prefix("sound:voicepay/").expect(m);
                match name {
                    "digits/liang" => "两".to_owned(),
                    "digits/yao" => "幺".to_owned(),
                    "units/shi" => "十".to_owned(),
                    "units/bai" => "百".to_owned(),
                    "units/qian" => "千".to_owned(),
                    "units/wan" => "万".to_owned(),
                    "units/yuan" => "元".to_owned(),
                    "units/jiao" => "角".to_owned(),
                    "units/fen" => "分".to_owned(),
                    "units/zheng" => "整".to_owned(),
                    d => {
                        let n: usize = d.strip_prefix("digits/").expect(d).parse().unwrap();
                        "零一二三四五六七八九".chars().nth(n).unwrap().to_string()
                    }
                }
            })
            .collect()
    }

    #[test]
    fn mandarin_amounts_from_the_brief() {
        assert_eq!(zh(1), "一分");
        assert_eq!(zh(10), "一角");
        assert_eq!(zh(100), "一元整");
        assert_eq!(zh(12345), "一百二十三元四角五分");
        assert_eq!(zh(100005), "一千元零五分");
        assert_eq!(zh(200000), "两千元整");
        assert_eq!(zh(1000000), "一万元整");
        assert_eq!(zh(10000000), "十万元整");
        assert_eq!(zh(100200300), "一百万两千零三元整");
        assert_eq!(zh(5000000000), "五千万元整");
    }

    #[test]
    fn mandarin_zero_gaps() {
        assert_eq!(zh(10100), "一百零一元整");
        assert_eq!(zh(100100), "一千零一元整");
        assert_eq!(zh(1000500), "一万零五元整");
        assert_eq!(zh(1005000), "一万零五十元整");
        assert_eq!(zh(1050000), "一万零五百元整");
        assert_eq!(zh(1500000), "一万五千元整");
        assert_eq!(zh(10000100), "十万零一元整");
        assert_eq!(zh(1000000000), "一千万元整");
        assert_eq!(zh(1000010000), "一千万零一百元整");
        assert_eq!(zh(102000000), "一百零二万元整");
        assert_eq!(zh(1005), "十元零五分");
        assert_eq!(zh(105), "一元零五分");
        assert_eq!(zh(55), "五角五分");
        assert_eq!(zh(5), "五分");
        assert_eq!(zh(150), "一元五角");
    }

    #[test]
    fn mandarin_ten_and_two() {
        assert_eq!(zh(1000), "十元整");
        assert_eq!(zh(1500), "十五元整");
        assert_eq!(zh(11000), "一百一十元整");
        assert_eq!(zh(1001000), "一万零一十元整");
        assert_eq!(zh(200), "二元整");
        assert_eq!(zh(2200), "二十二元整");
        assert_eq!(zh(22200), "两百二十二元整");
        assert_eq!(zh(2000000), "两万元整");
        assert_eq!(zh(22000000), "二十二万元整");
        assert_eq!(zh(220000000), "两百二十万元整");
        assert_eq!(zh(20), "二角");
    }

    #[test]
    fn mandarin_largest_amount_and_beyond() {
        assert_eq!(
            zh(9_999_999_999),
            "九千九百九十九万九千九百九十九元九角九分"
        );
        assert_eq!(zh(10_000_000_000), "一万万元整");
        assert_eq!(zh(0), "零元整");
        assert_eq!(zh(-5), "零元整");
    }

    #[test]
    fn english_amounts_use_asterisk_numbers() {
        let yuan = "sound:voicepay/units/yuan";
        let fen = "sound:voicepay/units/fen";
        assert_eq!(
            amount(12345, Language::En),
            ["number:123", yuan, "number:45", fen]
        );
        assert_eq!(amount(100, Language::En), ["number:1", yuan]);
        assert_eq!(amount(1, Language::En), ["number:1", fen]);
        assert_eq!(amount(5000000000, Language::En), ["number:50000000", yuan]);
    }

    #[test]
    fn card_digits() {
        assert_eq!(
            digits("1204", Language::Zh),
            [
                "sound:voicepay/digits/yao",
                "sound:voicepay/digits/2",
                "sound:voicepay/digits/0",
                "sound:voicepay/digits/4"
            ]
        );
        assert_eq!(
            digits("1x9", Language::En),
            ["sound:voicepay/digits/1", "sound:voicepay/digits/9"]
        );
    }

    #[test]
    fn counts() {
        assert_eq!(count(2, Language::Zh), ["sound:voicepay/digits/liang"]);
        assert_eq!(count(1, Language::Zh), ["sound:voicepay/digits/1"]);
        assert_eq!(count(3, Language::En), ["number:3"]);
    }
}
