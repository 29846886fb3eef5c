//! voicepay's Asterisk 22 side, against a real Asterisk brought up
//! by `scripts/asterisk up` (run `set -a; . scripts/lab.env; set +a` first,
//! or rely on lab.env's defaults). Without Asterisk these tests skip, except
//! under `CI=true`, where they fail.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use voicepay_testkit::lab::softphone::require_softphone;
use voicepay_testkit::lab::{
    log_window, log_window_alone, require_asterisk, secs, unique, Lab, Originate,
};
use voicepay_testkit::poll_until;

/// Every context voicepay's dialplan defines (lab profile).
const CONTEXTS: &[&str] = &[
    "voicepay-inbound",
    "voicepay-transfer",
    "voicepay-transfer-return",
    "voicepay-fallback",
    "voicepay-callback",
    "voicepay-lab",
    "voicepay-lab-merchant",
];

/// Lab handset numbers used here (not tester softphone numbers, so an
/// unscripted call never rings a softphone by accident).
const HANDSET: &str = "13700000001";

#[tokio::test]
async fn ari_answers_with_asterisk_22() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let info = lab.info().await?;
    let version = info["system"]["version"].as_str().unwrap_or_default();
    ensure!(
        version.starts_with("22."),
        "expected Asterisk 22.x, ARI reports {version:?}"
    );
    Ok(())
}

#[tokio::test]
async fn config_and_dialplan_load_without_warnings() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window_alone().await;
    let log = lab.log_dir().await?.join("messages.log");

    // This run's start-up, up to "Asterisk Ready.", had no warning or error.
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let startup: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains("Asterisk Ready."))
        .collect();
    let bad: Vec<&&str> = startup.iter().filter(|l| is_problem(l)).collect();
    ensure!(
        bad.is_empty(),
        "Asterisk start-up logged problems:\n{bad:#?}"
    );

    // Reloading the dialplan and PJSIP logs nothing bad either.
    let before = std::fs::metadata(&log)?.len() as usize;
    let out = lab.cli("dialplan reload").await?;
    ensure!(
        out.contains("Dialplan reloaded"),
        "dialplan reload said {out:?}"
    );
    lab.cli("module reload res_pjsip.so").await?;
    // Time for late warnings to reach the log: the check is that none comes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = std::fs::read(&log)?;
    let after = String::from_utf8_lossy(&text[before.min(text.len())..]).into_owned();
    let bad: Vec<&str> = after.lines().filter(|l| is_problem(l)).collect();
    ensure!(bad.is_empty(), "reload logged problems:\n{bad:#?}");

    for ctx in CONTEXTS {
        let out = lab.cli(&format!("dialplan show {ctx}")).await?;
        ensure!(
            out.contains(&format!("[ Context '{ctx}'")),
            "context {ctx} is not loaded: {out}"
        );
    }
    Ok(())
}

fn is_problem(line: &str) -> bool {
    line.contains("WARNING[") || line.contains("ERROR[")
}

#[tokio::test]
async fn logging_never_carries_keypad_digits() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let out = lab.cli("logger show channels").await?;
    for line in out
        .lines()
        .filter(|l| l.contains("messages") || l.contains("Console"))
    {
        let upper = line.to_uppercase();
        ensure!(!upper.contains("DTMF"), "a log channel takes DTMF: {line}");
        ensure!(
            !upper.contains("DEBUG"),
            "a log channel takes DEBUG: {line}"
        );
    }
    let settings = lab.cli("core show settings").await?;
    let debug: u32 = settings
        .lines()
        .find(|l| l.trim_start().starts_with("Debug level:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .context("no Debug level in core show settings")?;
    ensure!(debug <= 3, "core debug level {debug} > 3 would log digits");
    Ok(())
}

#[tokio::test]
async fn every_prompt_exists_in_zh_and_en() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let prompts = prompt_names(&lab)?;
    for lang in ["zh", "en"] {
        let known: BTreeMap<String, serde_json::Value> = lab
            .sounds(lang)
            .await?
            .into_iter()
            .filter_map(|s| Some((s["id"].as_str()?.to_string(), s)))
            .collect();
        for name in &prompts {
            let id = format!("voicepay/{name}");
            let sound = known
                .get(&id)
                .with_context(|| format!("Asterisk has no {lang} sound {id}"))?;
            let has_lang = sound["formats"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["language"] == lang));
            ensure!(has_lang, "{id} has no {lang} file: {sound}");
            let file = lab
                .repo()
                .join(format!("sounds/{lang}/voicepay/{name}.wav"));
            ensure!(file.is_file(), "{} is not committed", file.display());
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_prompt_plays_to_the_end_in_both_languages() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let prompts = prompt_names(&lab)?;
    // Three channels per language play their share side by side (~2 min of
    // audio per language otherwise).
    const PER_LANG: usize = 3;
    let mut jobs = Vec::new();
    for (n, lang) in ["zh", "en"].into_iter().enumerate() {
        for k in 0..PER_LANG {
            let share: Vec<String> = prompts.iter().skip(k).step_by(PER_LANG).cloned().collect();
            let phone = format!("1370000010{}", n * PER_LANG + k);
            jobs.push(tokio::spawn(play_all(phone, lang, share)));
        }
    }
    for job in jobs {
        job.await??;
    }
    Ok(())
}

/// Plays each prompt on its own channel (a lab handset that answers and
/// stays) and checks PlaybackFinished says `done`.
async fn play_all(phone: String, lang: &'static str, prompts: Vec<String>) -> Result<()> {
    let lab = Lab::from_env()?;
    let mut app = lab.app(&format!("prompts-{lang}")).await?;
    lab.script_handset(&phone, "answer=0;hold=600").await?;
    let id = unique("prompts");
    lab.originate(&Originate::to_app(lab.handset(&phone), app.name(), &id).timeout(10))
        .await?;
    app.wait_channel_event(&id, "StasisStart", secs(10)).await?;
    let mut result = Ok(());
    for name in &prompts {
        let media = format!("sound:voicepay/{name}");
        match app
            .play_and_wait(&lab, &id, &[&media], Some(lang), secs(30))
            .await
        {
            Ok(state) if state == "done" => {}
            Ok(state) => {
                result = Err(anyhow::anyhow!(
                    "{media} ({lang}) finished in state {state:?}"
                ));
                break;
            }
            Err(e) => {
                result = Err(e.context(format!("{media} ({lang})")));
                break;
            }
        }
    }
    lab.hangup(&id).await?;
    lab.clear_handset(&phone).await?;
    app.close().await;
    result
}

fn prompt_names(lab: &Lab) -> Result<Vec<String>> {
    let tsv = std::fs::read_to_string(lab.repo().join("sounds/prompts.tsv"))?;
    let names: Vec<String> = tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .skip(1) // header
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    ensure!(
        names.len() > 40,
        "prompts.tsv lists only {} prompts",
        names.len()
    );
    for code in [
        "invalid_card",
        "insufficient_funds",
        "wrong_secret",
        "id_mismatch",
        "pin_tries_exceeded",
        "input_timeout",
        "card_expired",
        "card_restricted",
        "over_limit",
        "issuer_unavailable",
        "caller_cancelled",
        "order_expired",
    ] {
        ensure!(
            names.contains(&format!("fail-{code}")),
            "no prompt fail-{code}"
        );
    }
    Ok(names)
}

#[tokio::test]
async fn lab_handset_keys_its_script_in_order() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let mut app = lab.app("dtmf").await?;
    lab.script_handset(HANDSET, "answer=1;delay=0.5;keys=1w805137#;hold=20")
        .await?;
    let id = unique("dtmf");
    let started = std::time::Instant::now();
    lab.originate(&Originate::to_app(lab.handset(HANDSET), app.name(), &id).timeout(10))
        .await?;
    app.wait_channel_event(&id, "StasisStart", secs(10)).await?;
    let rang = started.elapsed();
    ensure!(
        rang >= Duration::from_millis(900),
        "answered after {rang:?}, script says ring 1 s"
    );
    let digits = app.dtmf_digits(&id, 8, secs(15)).await?;
    lab.hangup(&id).await?;
    app.close().await;
    ensure!(digits == "1805137#", "digits arrived as {digits:?}");

    // The keys (a test PIN) reached no log.
    let log = std::fs::read_to_string(lab.log_dir().await?.join("messages.log"))?;
    ensure!(
        !log.contains("805137"),
        "the handset's keys appear in messages.log"
    );
    Ok(())
}

#[tokio::test]
async fn lab_handset_that_never_answers_gives_noanswer() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let phone = "13700000002";
    // Rings 2 s, then the "network" gives up: cause 19, Dial status NOANSWER.
    lab.script_handset(phone, "answer=never;hold=2").await?;
    let (status, cause) = dial_status(&lab, phone, 10).await?;
    ensure!(
        status == "NOANSWER" && cause == 19,
        "dialstatus {status:?}, cause {cause}"
    );

    // When our own originate timeout ends the ringing first, ARI sends no
    // final Dial status: only ChannelDestroyed with cause 19 (no answer).
    lab.script_handset(phone, "answer=never;hold=30").await?;
    let (status, cause) = dial_status(&lab, phone, 2).await?;
    ensure!(
        status.is_empty() && cause == 19,
        "dialstatus {status:?}, cause {cause}"
    );
    Ok(())
}

#[tokio::test]
async fn lab_handset_that_is_busy_gives_busy() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let phone = "13700000003";
    lab.script_handset(phone, "answer=busy").await?;
    // The Dial status is the signal here; ChannelDestroyed's cause is not
    // reliably 17 (busy) for an originate that never answered.
    let (status, _cause) = dial_status(&lab, phone, 10).await?;
    ensure!(status == "BUSY", "dialstatus {status:?}");
    Ok(())
}

/// Originates to a handset that will not answer; returns the final Dial
/// status ("" if none) and the hang-up cause, and checks the channel never
/// entered Stasis.
async fn dial_status(lab: &Lab, phone: &str, timeout: u32) -> Result<(String, u64)> {
    let mut app = lab.app("dial").await?;
    let id = unique("dial");
    lab.originate(&Originate::to_app(lab.handset(phone), app.name(), &id).timeout(timeout))
        .await?;
    let events = app
        .channel_events_until(&id, "ChannelDestroyed", secs(u64::from(timeout) + 10))
        .await?;
    ensure!(
        !events.iter().any(|e| e["type"] == "StasisStart"),
        "the call was answered"
    );
    let status = events
        .iter()
        .filter(|e| e["type"] == "Dial")
        .filter_map(|e| e["dialstatus"].as_str())
        .rfind(|s| !s.is_empty() && *s != "RINGING" && *s != "PROGRESS")
        .unwrap_or_default();
    let cause = events.last().and_then(|e| e["cause"].as_u64()).unwrap_or(0);
    app.close().await;
    Ok((status.to_string(), cause))
}

#[tokio::test]
async fn lab_handset_hangs_up_when_scripted() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let phone = "13700000004";
    // Hangs up 2 s after answering, in the middle of its (slow) keys.
    lab.script_handset(phone, "answer=0;hangup=2;keys=1WWWW2;hold=20")
        .await?;
    let mut app = lab.app("hangup").await?;
    let id = unique("hangup");
    lab.originate(&Originate::to_app(lab.handset(phone), app.name(), &id).timeout(10))
        .await?;
    app.wait_channel_event(&id, "StasisStart", secs(10)).await?;
    let t0 = std::time::Instant::now();
    let events = app.channel_events_until(&id, "StasisEnd", secs(10)).await?;
    let after = t0.elapsed();
    app.close().await;
    let digits: String = events
        .iter()
        .filter(|e| e["type"] == "ChannelDtmfReceived")
        .filter_map(|e| e["digit"].as_str())
        .collect();
    ensure!(digits == "1", "keys before the hang-up: {digits:?}");
    ensure!(
        after >= Duration::from_millis(1500) && after < secs(5),
        "hung up after {after:?}"
    );
    Ok(())
}

#[tokio::test]
async fn inbound_access_number_enters_voicepay() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let phone = "13700000005";
    lab.script_handset(phone, "answer=0;hold=30").await?;
    let mut app = lab.app("inbound").await?;
    let id = unique("inbound");
    // The handset's call, as seen by Asterisk, runs the access number.
    let o = Originate::to_dialplan(lab.handset(phone), "voicepay-inbound", "95516", &id)
        .caller_id(phone)
        .var("VOICEPAY_APP", app.name())
        .timeout(10);
    lab.originate(&o).await?;
    let start = app.wait_channel_event(&id, "StasisStart", secs(10)).await?;
    let dnis = lab.channel_var(&id, "VOICEPAY_DNIS").await?;
    lab.hangup(&id).await?;
    app.close().await;
    ensure!(dnis == "95516", "VOICEPAY_DNIS {dnis:?}");
    ensure!(
        start["args"] == serde_json::json!(["inbound"]),
        "args {}",
        start["args"]
    );
    ensure!(
        start["channel"]["caller"]["number"] == phone,
        "caller {}",
        start["channel"]["caller"]
    );
    ensure!(
        start["channel"]["language"] == "zh",
        "language {}",
        start["channel"]["language"]
    );
    Ok(())
}

#[tokio::test]
async fn inbound_while_voicepay_is_down_says_unavailable_and_hangs_up() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let phone = "13700000008";
    lab.script_handset(phone, "answer=0;hold=30").await?;
    let mut watcher = lab.app("watch").await?;
    let id = unique("inbound-down");
    let o = Originate::to_dialplan(lab.handset(phone), "voicepay-inbound", "95516", &id)
        .caller_id(phone)
        .var("VOICEPAY_APP", &unique("nobody-listens"))
        .timeout(10);
    lab.originate(&o).await?;
    lab.subscribe(watcher.name(), &format!("channel:{id}"))
        .await?;
    let t0 = std::time::Instant::now();
    let gone = watcher
        .wait_channel_event(&id, "ChannelDestroyed", secs(20))
        .await?;
    let after = t0.elapsed();
    watcher.close().await;
    // voicepay-fallback: the service-unavailable prompt, then cause 41.
    ensure!(gone["cause"] == 41, "hang-up cause {}", gone["cause"]);
    ensure!(
        after >= secs(2),
        "hung up after {after:?}, before the prompt could play"
    );
    Ok(())
}

#[tokio::test]
async fn transfer_returns_the_result_to_the_merchant() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let phone = "13700000006";
    let code = format!("{}", 100000 + std::process::id() % 800000);
    lab.script_handset(phone, "answer=0;delay=0.5;keys=805137#;hold=30")
        .await?;
    let mut app = lab.app("transfer").await?;
    let id = unique("transfer");
    let o = Originate::to_dialplan(
        lab.handset(phone),
        "voicepay-lab-merchant",
        "callcentre",
        &id,
    )
    .var("LAB_TRANSFER_CODE", &code)
    .var("VOICEPAY_APP", app.name())
    .timeout(10);
    lab.originate(&o).await?;
    let start = app.wait_channel_event(&id, "StasisStart", secs(10)).await?;
    ensure!(
        start["args"] == serde_json::json!(["transfer", code]),
        "args {}",
        start["args"]
    );
    // Acting as the daemon: collect the secret, then hand the call back.
    let digits = app.dtmf_digits(&id, 7, secs(10)).await?;
    ensure!(digits == "805137#", "digits {digits:?}");
    lab.set_channel_var(&id, "VOICEPAY_RESULT", "success")
        .await?;
    lab.set_channel_var(&id, "VOICEPAY_CODE", "approved")
        .await?;
    lab.continue_in_dialplan(&id, "voicepay-transfer-return", "s", 1)
        .await?;
    let result = wait_global(&lab, &format!("LAB_RESULT_{code}"), secs(10)).await?;
    lab.hangup(&id).await?;
    app.close().await;
    ensure!(result == "success:approved", "merchant saw {result:?}");
    Ok(())
}

#[tokio::test]
async fn transfer_while_voicepay_is_down_falls_back_to_the_merchant() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let phone = "13700000007";
    let code = format!("{}", 900000 + std::process::id() % 90000);
    lab.script_handset(phone, "answer=0;hold=30").await?;
    let id = unique("fallback");
    let o = Originate::to_dialplan(
        lab.handset(phone),
        "voicepay-lab-merchant",
        "callcentre",
        &id,
    )
    .var("LAB_TRANSFER_CODE", &code)
    .var("VOICEPAY_APP", &unique("nobody-listens"))
    .timeout(10);
    lab.set_global(&format!("LAB_RESULT_{code}"), "").await?;
    lab.originate(&o).await?;
    // The unavailable prompt plays first, then the merchant gets the result.
    let result = wait_global(&lab, &format!("LAB_RESULT_{code}"), secs(20)).await?;
    lab.hangup(&id).await?;
    ensure!(
        result == "failure:service_unavailable",
        "merchant saw {result:?}"
    );
    Ok(())
}

async fn wait_global(lab: &Lab, name: &str, timeout: Duration) -> Result<String> {
    poll_until(timeout, Duration::from_millis(200), async || {
        match lab.global(name).await? {
            v if v.is_empty() => bail!("{name} still unset after {timeout:?}"),
            v => Ok(v),
        }
    })
    .await
}

#[tokio::test]
async fn softphone_answers_and_keys_rfc4733_dtmf() -> Result<()> {
    let Some(lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let Some(mut phone) = require_softphone(&lab, "13800138000").await else {
        return Ok(());
    };
    let mut app = lab.app("sip").await?;
    let id = unique("sip");
    lab.originate(&Originate::to_app("PJSIP/13800138000", app.name(), &id).timeout(15))
        .await?;
    let start = app.wait_channel_event(&id, "StasisStart", secs(15)).await;
    let result = async {
        start.with_context(|| format!("baresip log:\n{}", phone.log_tail()))?;
        // Let media settle before keying (nothing on ARI says when it has).
        tokio::time::sleep(Duration::from_millis(500)).await;
        phone.send_dtmf("19#", Duration::from_millis(400)).await?;
        app.dtmf_digits(&id, 3, secs(10)).await
    }
    .await;
    lab.hangup(&id).await?;
    app.close().await;
    phone.stop().await;
    let digits = result?;
    ensure!(digits == "19#", "RFC 4733 digits arrived as {digits:?}");
    Ok(())
}
