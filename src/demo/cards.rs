//! The stub issuer's test cards as the demo page offers them (README "Test
//! cards"): one click fills the form. Published test values only; the unit
//! test checks each against the built-in table `src/bank/test_cards.toml`.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DemoCard {
    pub card: &'static str,
    pub id: &'static str,
    pub kind: &'static str,
    /// What the cardholder keys on the phone (published test values).
    pub keys: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
}

pub const CARDS: &[DemoCard] = &[
    DemoCard {
        card: "6222000000000017",
        id: "11010519491231002X",
        kind: "debit",
        keys: "805137",
        zh: "借记卡，支付成功",
        en: "Debit, approves",
    },
    DemoCard {
        card: "6217000000000014",
        id: "310115198506154322",
        kind: "debit",
        keys: "246810",
        zh: "借记卡（测试银行2），支付成功",
        en: "Debit (Test Bank 2), approves",
    },
    DemoCard {
        card: "6250000000000012",
        id: "11010519491231002X",
        kind: "credit",
        keys: "1230 123",
        zh: "信用卡，支付成功",
        en: "Credit, approves",
    },
    DemoCard {
        card: "6222000000000025",
        id: "11010519491231002X",
        kind: "debit",
        keys: "805137",
        zh: "借记卡，余额不足",
        en: "Debit, insufficient funds",
    },
    DemoCard {
        card: "6222000000000033",
        id: "11010519491231002X",
        kind: "debit",
        keys: "805137",
        zh: "借记卡，已挂失",
        en: "Debit, reported lost",
    },
    DemoCard {
        card: "6222000000000041",
        id: "11010519491231002X",
        kind: "debit",
        keys: "805137",
        zh: "借记卡，银行 5 秒后应答",
        en: "Debit, bank answers after 5 s",
    },
    DemoCard {
        card: "6222000000000058",
        id: "11010519491231002X",
        kind: "debit",
        keys: "805137",
        zh: "借记卡，授权无应答后查询成功",
        en: "Debit, no answer then settled by query",
    },
    DemoCard {
        card: "6222000000000066",
        id: "11010519491231002X",
        kind: "debit",
        keys: "805137",
        zh: "借记卡，发卡行不可用",
        en: "Debit, issuer unavailable",
    },
    DemoCard {
        card: "6250000000000020",
        id: "11010519491231002X",
        kind: "credit",
        keys: "1230 123",
        zh: "信用卡，卡已过期",
        en: "Credit, card expired",
    },
    DemoCard {
        card: "6250000000000038",
        id: "11010519491231002X",
        kind: "credit",
        keys: "1230 123",
        zh: "信用卡，额度不足",
        en: "Credit, insufficient credit",
    },
];

/// The table as a JSON array, for the page.
pub fn json() -> String {
    serde_json::to_string(CARDS).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::CARDS;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// Each demo card is in the built-in table with the same kind and
    /// holder, and the keys shown are the card's secret there.
    #[test]
    fn demo_cards_match_the_stub_issuers_table() {
        let table: toml::Table =
            toml::from_str(include_str!("../bank/test_cards.toml")).expect("table");
        let cards = table["cards"].as_array().expect("cards");
        assert_eq!(CARDS.len(), cards.len(), "every test card is offered");
        for demo in CARDS {
            let row = cards
                .iter()
                .find(|c| c["pan"].as_str() == Some(demo.card))
                .unwrap_or_else(|| panic!("{} is not a test card", demo.card));
            assert_eq!(row["kind"].as_str(), Some(demo.kind), "{}", demo.card);
            assert_eq!(row["holder_id"].as_str(), Some(demo.id), "{}", demo.card);
            let salt = hex::decode(row["salt"].as_str().expect("salt")).expect("hex salt");
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&salt).expect("key");
            mac.update(demo.keys.replace(' ', "").as_bytes());
            assert_eq!(
                row["secret_hash"].as_str(),
                Some(hex::encode(mac.finalize().into_bytes()).as_str()),
                "{}: wrong keys shown",
                demo.card
            );
        }
        assert_eq!(CARDS[0].card, "6222000000000017", "the first card approves");
    }
}
