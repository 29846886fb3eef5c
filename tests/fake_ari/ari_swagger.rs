//! Our ARI models against the swagger JSON that ships with Asterisk
//! (`/usr/share/asterisk/rest-api/*.json`), so a field renamed or retyped
//! in a new Asterisk shows up here rather than as a silently skipped event.
//!
//! The directory comes from `VOICEPAY_ARI_SWAGGER_DIR` (default: the lab
//! chroot's copy). Without it the tests skip, except under `CI=true`.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use voicepay::ari::events::{self, ChannelState, Event, PlaybackState};

const DEFAULT_DIR: &str = "/var/cache/voicepay/asterisk-sid/usr/share/asterisk/rest-api";

/// Every model of the files we use, by name.
fn models() -> Option<BTreeMap<String, Value>> {
    let dir = PathBuf::from(
        std::env::var("VOICEPAY_ARI_SWAGGER_DIR").unwrap_or_else(|_| DEFAULT_DIR.into()),
    );
    if !dir.join("events.json").exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "CI=true but the ARI swagger is not at {} (set VOICEPAY_ARI_SWAGGER_DIR)",
                dir.display()
            );
        }
        eprintln!(
            "skipping: ARI swagger not found at {} (set VOICEPAY_ARI_SWAGGER_DIR)",
            dir.display()
        );
        return None;
    }
    let mut all = BTreeMap::new();
    for file in [
        "events.json",
        "channels.json",
        "playbacks.json",
        "asterisk.json",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        for (name, model) in doc["models"].as_object().unwrap() {
            all.entry(name.clone()).or_insert_with(|| model.clone());
        }
    }
    Some(all)
}

fn prop<'a>(models: &'a BTreeMap<String, Value>, model: &str, field: &str) -> &'a Value {
    let m = models
        .get(model)
        .unwrap_or_else(|| panic!("swagger has no model {model}"));
    let p = &m["properties"][field];
    assert!(p.is_object(), "swagger model {model} has no field {field}");
    p
}

/// (model, field, swagger types we accept, whether our model requires it).
/// Our `i64` takes `int` and `long`; our `String` takes `string` and `Date`.
const FIELDS: &[(&str, &str, &[&str], bool)] = &[
    ("StasisStart", "args", &["List[string]"], false),
    ("StasisStart", "channel", &["Channel"], true),
    ("StasisStart", "replace_channel", &["Channel"], false),
    ("StasisEnd", "channel", &["Channel"], true),
    ("ChannelDtmfReceived", "digit", &["string"], true),
    (
        "ChannelDtmfReceived",
        "duration_ms",
        &["int", "long"],
        false,
    ),
    ("ChannelDtmfReceived", "channel", &["Channel"], true),
    ("PlaybackStarted", "playback", &["Playback"], true),
    ("PlaybackContinuing", "playback", &["Playback"], true),
    ("PlaybackFinished", "playback", &["Playback"], true),
    ("ChannelHangupRequest", "cause", &["int", "long"], false),
    (
        "ChannelHangupRequest",
        "tech_cause",
        &["int", "long"],
        false,
    ),
    ("ChannelHangupRequest", "soft", &["boolean"], false),
    ("ChannelHangupRequest", "channel", &["Channel"], true),
    ("ChannelDestroyed", "cause", &["int", "long"], true),
    ("ChannelDestroyed", "cause_txt", &["string"], false),
    ("ChannelDestroyed", "tech_cause", &["int", "long"], false),
    ("ChannelDestroyed", "channel", &["Channel"], true),
    ("ChannelStateChange", "channel", &["Channel"], true),
    ("Dial", "dialstatus", &["string"], true),
    ("Dial", "peer", &["Channel"], true),
    ("Dial", "caller", &["Channel"], false),
    ("Dial", "dialstring", &["string"], false),
    ("Dial", "forward", &["string"], false),
    ("Dial", "forwarded", &["Channel"], false),
    ("ChannelTalkingStarted", "channel", &["Channel"], true),
    ("ChannelTalkingFinished", "channel", &["Channel"], true),
    (
        "ChannelTalkingFinished",
        "duration",
        &["int", "long"],
        false,
    ),
    ("Message", "type", &["string"], true),
    ("Event", "timestamp", &["Date"], false),
    ("Channel", "id", &["string"], true),
    ("Channel", "name", &["string"], false),
    ("Channel", "state", &["string"], false),
    ("Channel", "caller", &["CallerID"], false),
    ("Channel", "connected", &["CallerID"], false),
    ("Channel", "accountcode", &["string"], false),
    ("Channel", "dialplan", &["DialplanCEP"], false),
    ("Channel", "creationtime", &["Date", "string"], false),
    ("Channel", "language", &["string"], false),
    ("Channel", "channelvars", &["object"], false),
    ("CallerID", "name", &["string"], false),
    ("CallerID", "number", &["string"], false),
    ("DialplanCEP", "context", &["string"], false),
    ("DialplanCEP", "exten", &["string"], false),
    ("DialplanCEP", "priority", &["long", "int"], false),
    ("DialplanCEP", "app_name", &["string"], false),
    ("DialplanCEP", "app_data", &["string"], false),
    ("Playback", "id", &["string"], true),
    ("Playback", "media_uri", &["string"], false),
    ("Playback", "next_media_uri", &["string"], false),
    ("Playback", "target_uri", &["string"], false),
    ("Playback", "language", &["string"], false),
    ("Playback", "state", &["string"], false),
    ("AsteriskInfo", "system", &["SystemInfo"], false),
    ("SystemInfo", "entity_id", &["string"], true),
    ("SystemInfo", "version", &["string"], false),
];

#[test]
fn the_fields_we_read_exist_with_the_types_we_expect() {
    let Some(models) = models() else { return };
    for &(model, field, types, we_require) in FIELDS {
        let p = prop(&models, model, field);
        let ty = p["type"].as_str().unwrap();
        assert!(
            types.contains(&ty),
            "{model}.{field} is {ty} in the swagger, we expect one of {types:?}"
        );
        if we_require {
            // We may only insist on what Asterisk promises to send.
            assert_eq!(
                p["required"],
                json!(true),
                "{model}.{field} is optional in the swagger but required by us"
            );
        }
    }
}

#[test]
fn every_event_type_we_name_is_an_ari_event() {
    let Some(models) = models() else { return };
    let subtypes: Vec<&str> = models["Event"]["subTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in Event::KNOWN_TYPES {
        assert!(models.contains_key(*name), "no model {name}");
        assert!(subtypes.contains(name), "{name} is not an Event subtype");
        let checked = FIELDS.iter().any(|(m, ..)| m == name);
        let fields = models[*name]["properties"].as_object().unwrap();
        assert!(
            checked || fields.is_empty(),
            "{name} has fields but none is checked in FIELDS"
        );
    }
}

/// A sample value for a swagger type: every property of a model when
/// `all` is set, else only the required ones.
fn sample(models: &BTreeMap<String, Value>, ty: &str, spec: &Value, all: bool) -> Value {
    if let Some(values) = spec["allowableValues"]["values"].as_array() {
        return values[0].clone();
    }
    match ty {
        "string" => json!("x"),
        "int" | "long" => json!(16),
        "boolean" => json!(true),
        "Date" => json!("2025-01-01T00:00:00.000+0000"),
        "object" => json!({}),
        t if t.starts_with("List[") => {
            let inner = &t[5..t.len() - 1];
            json!([sample(models, inner, &Value::Null, all)])
        }
        model => {
            let m = models
                .get(model)
                .unwrap_or_else(|| panic!("swagger has no model {model}"));
            let mut out = Map::new();
            for (name, p) in m["properties"].as_object().unwrap() {
                if all || p["required"] == json!(true) {
                    out.insert(
                        name.clone(),
                        sample(models, p["type"].as_str().unwrap(), p, all),
                    );
                }
            }
            Value::Object(out)
        }
    }
}

#[test]
fn events_built_from_the_swagger_parse_as_their_variant() {
    let Some(models) = models() else { return };
    for all in [false, true] {
        for name in Event::KNOWN_TYPES {
            let mut frame = sample(&models, name, &Value::Null, all);
            let obj = frame.as_object_mut().unwrap();
            // The inherited Message and Event fields.
            for base in ["Message", "Event"] {
                if let Value::Object(b) = sample(&models, base, &Value::Null, all) {
                    obj.extend(b);
                }
            }
            obj.insert("type".into(), json!(name));
            let ev = events::parse(&frame.to_string())
                .unwrap_or_else(|e| panic!("{name} (all fields: {all}): {e}"));
            assert_eq!(ev.type_name(), *name);
        }
    }
}

#[test]
fn every_listed_state_value_parses_as_a_known_state() {
    let Some(models) = models() else { return };
    let values = |model: &str| -> Vec<String> {
        prop(&models, model, "state")["allowableValues"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    for v in values("Channel") {
        let s: ChannelState = serde_json::from_value(json!(v)).unwrap();
        assert!(
            !matches!(s, ChannelState::Other(_)),
            "channel state {v} unknown to us"
        );
        assert_eq!(s.as_str(), v);
    }
    for v in values("Playback") {
        let s: PlaybackState = serde_json::from_value(json!(v)).unwrap();
        assert!(
            !matches!(s, PlaybackState::Other(_)),
            "playback state {v} unknown to us"
        );
        assert_eq!(s.as_str(), v);
    }
}
