//! Samples shaped like Asterisk 22's frames (swagger models `events.json`,
//! `channels.json`, `playbacks.json`).

use super::*;
use serde_json::{json, Value};

fn channel(id: &str, state: &str) -> Value {
    json!({
        "id": id,
        "name": "PJSIP/trunk-00000001",
        "state": state,
        "protocol_id": "a84d0c9e",
        "caller": {"name": "", "number": "13700000001"},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {"context": "voicepay-callback", "exten": "s", "priority": 1,
                     "app_name": "Stasis", "app_data": "voicepay,callback,o1"},
        "creationtime": "2025-01-01T10:00:00.000+0800",
        "language": "zh"
    })
}

fn event(kind: &str, fields: Value) -> Value {
    let mut v = json!({
        "type": kind,
        "application": "voicepay",
        "timestamp": "2025-01-01T10:00:01.000+0800",
        "asterisk_id": "00:11:22:33:44:55"
    });
    v.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    v
}

fn parse_value(v: &Value) -> Event {
    parse(&v.to_string()).expect("parses")
}

#[test]
fn stasis_start_carries_args_and_channel() {
    let ev = parse_value(&event(
        "StasisStart",
        json!({"args": ["callback", "o1"], "channel": channel("c1", "Up")}),
    ));
    let Event::StasisStart {
        args,
        channel,
        replace_channel,
    } = &ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(args, &["callback", "o1"]);
    assert_eq!(channel.state, ChannelState::Up);
    assert_eq!(channel.caller.number, "13700000001");
    assert_eq!(channel.language.as_deref(), Some("zh"));
    assert_eq!(channel.dialplan.as_ref().unwrap().priority, 1);
    assert!(replace_channel.is_none());
    assert_eq!(ev.channel_id(), Some("c1"));
    assert_eq!(ev.type_name(), "StasisStart");
}

#[test]
fn a_masquerade_names_the_channel_it_replaces() {
    // An attended transfer into the app: the new channel, no args, and the
    // old channel it takes the place of (res_stasis.c channel_replaced_cb).
    let ev = parse_value(&event(
        "StasisStart",
        json!({"args": [], "channel": channel("new.2", "Up"),
               "replace_channel": channel("old.1", "Up")}),
    ));
    assert_eq!(ev.channel_id(), Some("new.2"));
    assert_eq!(ev.replaced_channel_id(), Some("old.1"));
    assert!(!ev.ends_channel());
    let plain = parse_value(&event(
        "StasisStart",
        json!({"args": ["inbound"], "channel": channel("c1", "Up")}),
    ));
    assert_eq!(plain.replaced_channel_id(), None);
    let end = parse_value(&event(
        "StasisEnd",
        json!({"channel": channel("old.1", "Up")}),
    ));
    assert!(end.ends_channel());
}

#[test]
fn dtmf_digit_parses_but_never_prints() {
    let ev = parse_value(&event(
        "ChannelDtmfReceived",
        json!({"digit": "7", "duration_ms": 120, "channel": channel("c1", "Up")}),
    ));
    let Event::ChannelDtmfReceived {
        digit, duration_ms, ..
    } = &ev
    else {
        panic!("not dtmf")
    };
    assert_eq!(digit.expose(), Some('7'));
    assert_eq!(*duration_ms, 120);
    assert_eq!(format!("{digit:?}"), "DtmfDigit(*)");
    assert!(format!("{ev:?}").contains("digit: DtmfDigit(*), duration_ms: 120"));
    assert_eq!(ev.channel_id(), Some("c1"));
}

fn dtmf_ended_at(timestamp: Value) -> Option<i64> {
    let mut v = event(
        "ChannelDtmfReceived",
        json!({"digit": "8", "duration_ms": 280, "channel": channel("c1", "Up")}),
    );
    v["timestamp"] = timestamp;
    match parse_value(&v) {
        Event::ChannelDtmfReceived { ended_at_ms, .. } => ended_at_ms,
        other => panic!("not dtmf: {other:?}"),
    }
}

#[test]
fn dtmf_timestamp_is_read_to_the_millisecond() {
    // 2025-01-01T02:00:01.000Z
    let base = 1_735_696_801_000;
    assert_eq!(
        dtmf_ended_at(json!("2025-01-01T10:00:01.000+0800")),
        Some(base)
    );
    assert_eq!(
        dtmf_ended_at(json!("2025-01-01T10:00:01.020+0800")),
        Some(base + 20)
    );
    assert_eq!(
        dtmf_ended_at(json!("2025-01-01T02:00:01.5+0000")),
        Some(base + 500)
    );
    assert_eq!(dtmf_ended_at(json!("2025-01-01T10:00:01+0800")), Some(base));
    assert_eq!(
        dtmf_ended_at(json!("2025-01-01T10:00:01.020+08:00")),
        Some(base + 20)
    );
    // Unreadable or absent: the digit still arrives, without a time.
    assert_eq!(dtmf_ended_at(json!("yesterday")), None);
    assert_eq!(dtmf_ended_at(Value::Null), None);
    let no_time = json!({"type": "ChannelDtmfReceived", "digit": "8",
                         "channel": channel("c1", "Up")});
    let Event::ChannelDtmfReceived {
        ended_at_ms,
        duration_ms,
        ..
    } = parse_value(&no_time)
    else {
        panic!("not dtmf")
    };
    assert_eq!((ended_at_ms, duration_ms), (None, 0));
}

#[test]
fn malformed_dtmf_error_does_not_quote_the_digit() {
    // A number where a string belongs: serde would quote the value.
    let bad = event(
        "ChannelDtmfReceived",
        json!({"digit": 7, "duration_ms": 1, "channel": channel("c1", "Up")}),
    );
    let err = parse(&bad.to_string()).unwrap_err();
    assert_eq!(err.event_type, "ChannelDtmfReceived");
    assert_eq!(err.category, "data");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains('7'), "{shown}");
}

#[test]
fn playback_events_route_by_target_or_id() {
    let pb = json!({"id": "c9:3", "media_uri": "sound:hello", "target_uri": "channel:c1",
                    "language": "en", "state": "playing"});
    for kind in ["PlaybackStarted", "PlaybackContinuing", "PlaybackFinished"] {
        let ev = parse_value(&event(kind, json!({ "playback": pb })));
        assert_eq!(ev.type_name(), kind);
        // The target wins over the id convention.
        assert_eq!(ev.channel_id(), Some("c1"));
    }
    let on_bridge = json!({"id": "c2:4", "media_uri": "sound:x", "target_uri": "bridge:b1",
                           "state": "done"});
    let ev = parse_value(&event("PlaybackFinished", json!({ "playback": on_bridge })));
    assert_eq!(ev.channel_id(), Some("c2"));
    let foreign = json!({"id": "d6f1-77", "media_uri": "sound:x", "target_uri": "bridge:b1",
                         "state": "done"});
    let ev = parse_value(&event("PlaybackFinished", json!({ "playback": foreign })));
    assert_eq!(ev.channel_id(), None);
}

#[test]
fn playback_id_convention_round_trips() {
    let id = playback_id("vp-cb-1700000000.12", 7);
    assert_eq!(id, "vp-cb-1700000000.12:7");
    assert_eq!(playback_channel(&id), Some("vp-cb-1700000000.12"));
    assert_eq!(playback_channel("a:b:2"), Some("a:b"));
    assert_eq!(playback_channel("nocolon"), None);
    assert_eq!(playback_channel("c1:"), None);
    assert_eq!(playback_channel(":3"), None);
    assert_eq!(playback_channel("c1:x"), None);
}

#[test]
fn paused_and_unknown_playback_states_fall_back() {
    for (text, want) in [
        ("paused", PlaybackState::Paused),
        ("done", PlaybackState::Done),
        ("failed", PlaybackState::Failed),
        ("rewinding", PlaybackState::Other("rewinding".into())),
    ] {
        let pb = json!({"id": "c1:1", "media_uri": "sound:x", "target_uri": "channel:c1",
                        "state": text});
        let ev = parse_value(&event("PlaybackFinished", json!({ "playback": pb })));
        let Event::PlaybackFinished { playback } = ev else {
            panic!()
        };
        assert_eq!(playback.state, want);
        assert_eq!(playback.state.as_str(), text);
    }
}

#[test]
fn pre_ring_and_unknown_channel_states_fall_back() {
    for (text, want) in [
        ("Pre-ring", ChannelState::PreRing),
        ("Dialing Offhook", ChannelState::DialingOffhook),
        ("Unknown", ChannelState::Unknown),
        ("Teleporting", ChannelState::Other("Teleporting".into())),
    ] {
        let ev = parse_value(&event(
            "ChannelStateChange",
            json!({ "channel": channel("c1", text) }),
        ));
        let Event::ChannelStateChange { channel } = ev else {
            panic!()
        };
        assert_eq!(channel.state, want);
        assert_eq!(String::from(channel.state), text);
    }
}

#[test]
fn hangup_request_and_destroyed_carry_causes() {
    let ev = parse_value(&event(
        "ChannelHangupRequest",
        json!({"cause": 16, "soft": true, "channel": channel("c1", "Up")}),
    ));
    assert!(matches!(
        ev,
        Event::ChannelHangupRequest {
            cause: Some(16),
            soft: Some(true),
            ..
        }
    ));
    // cause and soft are optional in the model.
    let ev = parse_value(&event(
        "ChannelHangupRequest",
        json!({"channel": channel("c1", "Up")}),
    ));
    assert!(matches!(
        ev,
        Event::ChannelHangupRequest {
            cause: None,
            soft: None,
            ..
        }
    ));
    let ev = parse_value(&event(
        "ChannelDestroyed",
        json!({"cause": 17, "cause_txt": "User busy", "channel": channel("c1", "Busy")}),
    ));
    let Event::ChannelDestroyed {
        cause, cause_txt, ..
    } = &ev
    else {
        panic!()
    };
    assert_eq!((*cause, cause_txt.as_str()), (17, "User busy"));
    assert_eq!(ev.channel_id(), Some("c1"));
}

#[test]
fn dial_routes_to_the_peer() {
    let ev = parse_value(&event(
        "Dial",
        json!({"dialstatus": "NOANSWER", "dialstring": "13700000001@trunk",
               "peer": channel("vp-1", "Ring")}),
    ));
    let Event::Dial {
        dialstatus, caller, ..
    } = &ev
    else {
        panic!()
    };
    assert_eq!(dialstatus, "NOANSWER");
    assert!(caller.is_none());
    assert_eq!(ev.channel_id(), Some("vp-1"));
}

#[test]
fn unknown_types_and_app_events_have_no_channel() {
    let ev = parse_value(&event(
        "ChannelVarset",
        json!({"variable": "X", "value": "1", "channel": channel("c1", "Up")}),
    ));
    assert_eq!(ev, Event::Unknown);
    assert_eq!(ev.channel_id(), None);
    assert_eq!(
        parse(r#"{"type":"BrandNewThing2030","whatever":[1,2]}"#),
        Ok(Event::Unknown)
    );
    let ev = parse_value(&event("ApplicationReplaced", json!({})));
    assert_eq!(ev, Event::ApplicationReplaced);
    assert_eq!(ev.channel_id(), None);
}

#[test]
fn minimal_channel_parses() {
    // Only the id: older or trimmed payloads must still route.
    let ev = parse(r#"{"type":"StasisEnd","channel":{"id":"c1"}}"#).unwrap();
    let Event::StasisEnd { channel } = &ev else {
        panic!()
    };
    assert_eq!(channel.state, ChannelState::Unknown);
    assert!(channel.dialplan.is_none());
    assert_eq!(ev.channel_id(), Some("c1"));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert_eq!(parse("not json").unwrap_err().event_type, "?");
    assert_eq!(parse(r#"{"no_type":1}"#).unwrap_err().category, "data");
    let err = parse(r#"{"type":"StasisStart","args":[]}"#).unwrap_err();
    assert_eq!(err.event_type, "StasisStart");
    assert_eq!(type_of(r#"{"type":"has space"}"#), None);
}

#[test]
fn events_stay_small_in_queues() {
    // Every queued event costs this much per slot; keep the rare channels boxed.
    let size = std::mem::size_of::<Event>();
    assert!(size <= 512, "Event is {size} bytes");
}

#[test]
fn talk_detection_events_parse_with_their_duration() {
    let ev = parse_value(&event(
        "ChannelTalkingStarted",
        json!({"channel": channel("c1", "Up")}),
    ));
    assert_eq!(ev.type_name(), "ChannelTalkingStarted");
    assert_eq!(ev.channel_id(), Some("c1"));
    let ev = parse_value(&event(
        "ChannelTalkingFinished",
        json!({"duration": 6420, "channel": channel("c1", "Up")}),
    ));
    let Event::ChannelTalkingFinished { duration, .. } = &ev else {
        panic!("not talking finished")
    };
    assert_eq!(*duration, 6420);
    assert_eq!(ev.channel_id(), Some("c1"));
}

/// One frame of every modelled type, with every field its variant reads
/// and the envelope fields it skips.
fn every_known_frame() -> Vec<Value> {
    let c = || channel("c1", "Up");
    let pb = || {
        json!({"id": "c1:3", "media_uri": "sound:voicepay/welcome", "next_media_uri": "sound:voicepay/enter-pin",
                      "target_uri": "channel:c1", "language": "zh", "state": "playing"})
    };
    vec![
        event(
            "StasisStart",
            json!({"args": ["callback", "o1"], "channel": c(), "replace_channel": channel("c0", "Up")}),
        ),
        event("StasisEnd", json!({"channel": c()})),
        event(
            "ChannelDtmfReceived",
            json!({"digit": "7", "duration_ms": 120, "channel": c()}),
        ),
        event("PlaybackStarted", json!({"playback": pb()})),
        event("PlaybackContinuing", json!({"playback": pb()})),
        event("PlaybackFinished", json!({"playback": pb()})),
        event(
            "ChannelHangupRequest",
            json!({"cause": 16, "tech_cause": 200, "soft": true, "channel": c()}),
        ),
        event(
            "ChannelDestroyed",
            json!({"cause": 17, "cause_txt": "User busy", "tech_cause": 486, "channel": c()}),
        ),
        event("ChannelStateChange", json!({"channel": c()})),
        event(
            "Dial",
            json!({"dialstatus": "ANSWER", "peer": c(), "caller": channel("c0", "Up"),
                             "dialstring": "13700000001@carrier", "forward": "x", "forwarded": channel("c2", "Ring")}),
        ),
        event("ChannelTalkingStarted", json!({"channel": c()})),
        event(
            "ChannelTalkingFinished",
            json!({"duration": 6420, "channel": c()}),
        ),
        event("ApplicationReplaced", json!({})),
    ]
}

#[test]
fn the_fast_reader_gives_what_serdes_tagged_derive_gives() {
    let frames = every_known_frame();
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, Event::KNOWN_TYPES, "a frame for every modelled type");
    let mut minimal = vec![
        json!({"type": "StasisEnd", "channel": {"id": "c1"}}),
        json!({"type": "ChannelDtmfReceived", "digit": "#", "channel": {"id": "c1"}}),
        json!({"type": "PlaybackFinished", "playback": {"id": "c1:1"}}),
        json!({"type": "BrandNewThing2030", "whatever": [1, 2]}),
        json!({"channel": {"id": "c1"}, "type": "StasisEnd"}),
    ];
    minimal.extend(frames);
    for f in minimal {
        let text = f.to_string();
        let derived: Event = serde_json::from_str(&text).expect("the derive reads it");
        assert_eq!(parse(&text), Ok(derived), "{text}");
    }
    // Bad frames fail on both paths, in the same category.
    for bad in [
        "not json",
        r#"{"no_type":1}"#,
        r#"{"type":"StasisStart","args":[]}"#,
        r#"{"type":"ChannelDestroyed","channel":{"id":"c1"}}"#,
        r#"{"type":"ChannelDtmfReceived","digit":5,"channel":{"id":"c1"}}"#,
        r#"{"type":"StasisEnd","channel":{"id":"c1"}"#,
    ] {
        let derived = serde_json::from_str::<Event>(bad).unwrap_err();
        let err = parse(bad).unwrap_err();
        let category = format!("{:?}", derived.classify()).to_lowercase();
        assert_eq!(err.category, category, "{bad}");
    }
}
