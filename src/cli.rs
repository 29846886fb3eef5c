//! The command line: `serve`, `migrate`, `merchant add | rotate-key |
//! revoke-key | disable | enable | rotate-webhook-secret | set-acceptor-id |
//! list`, `webhooks list|redeliver`, `bank cards | serve`, `config check`.

use crate::app::{self, App};
use crate::config::Settings;
use crate::crypto::{KeyRing, Vault};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "voicepay",
    version,
    about = "Dual-channel card payments on Asterisk"
)]
pub struct Cli {
    /// TOML configuration file; `VOICEPAY__SECTION__KEY` variables override it.
    #[arg(long, global = true, env = "VOICEPAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: the merchant API, calls over ARI (when `ari.password`
    /// is set), the matcher and the webhook worker, until SIGTERM or ctrl-c.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage merchants.
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// Inspect and resend webhook events.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The stub issuer (testers): list its test cards (`cards`), or run it
    /// as an ISO 8583 issuer host (`serve`).
    Bank {
        #[command(subcommand)]
        command: BankCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum BankCommand {
    /// Print every test card, masked, with its balance and today's wrong
    /// PINs, as the stub's durable state (`bank.stub_state`) says now. Only
    /// reads: safe while the daemon runs.
    Cards {
        /// Print `{"state": path, "cards": [{"card","bank","kind","available_fen","wrong_pins_today"}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Run the stub issuer as an ISO 8583 issuer host (README: "Shared
    /// issuer host") until SIGTERM or ctrl-c: the test cards of
    /// `bank.stub_cards`, its durable state (`bank.stub_state`), F52 under
    /// `[bank.iso8583]` `zone_pin_key` / `zone_pin_key_id`. Prints one ready
    /// line with the address and the key's id and check value.
    Serve {
        /// Where to listen (`host:port`; port 0: any free one).
        #[arg(long, default_value = "127.0.0.1:8583")]
        listen: std::net::SocketAddr,
        /// Accept a non-loopback `--listen`: anyone who can reach it can
        /// move the test cards' money and try their PINs.
        #[arg(long)]
        allow_remote: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MerchantCommand {
    /// Create a merchant and print its id, API key and webhook secret, once.
    Add {
        #[arg(long)]
        name: String,
        /// Default webhook URL for the merchant's orders.
        #[arg(long)]
        notify_url: Option<String>,
        /// The card acceptor id the acquirer assigned (ISO 8583 F42): 1-15
        /// printable ASCII characters.
        #[arg(long)]
        acceptor_id: Option<String>,
        /// Print `{"merchant_id","api_key","webhook_secret"}`.
        #[arg(long)]
        json: bool,
    },
    /// Give the merchant a new API key and print it, once. The replaced key
    /// stops at once unless `--overlap-seconds` keeps it working a while.
    RotateKey {
        /// The merchant id (`mch_…`).
        merchant_id: String,
        /// Seconds the replaced key keeps working (0: none).
        #[arg(long, default_value_t = 0)]
        overlap_seconds: u64,
        /// Print `{"merchant_id","api_key","old_key_valid_until_ms"}`.
        #[arg(long)]
        json: bool,
    },
    /// Make the merchant's API key unusable now, and a replaced key still in
    /// its overlap; `rotate-key` issues a new one.
    RevokeKey {
        merchant_id: String,
        /// Only end the replaced key's overlap; the current key stays.
        #[arg(long)]
        previous: bool,
    },
    /// Refuse every API call of the merchant (403 `merchant_disabled`),
    /// start no call for its orders and hold its webhooks. Calls already
    /// under way end as usual.
    Disable { merchant_id: String },
    /// Undo `disable`: held webhooks are sent, pending orders called.
    Enable { merchant_id: String },
    /// Set the merchant's card acceptor id (ISO 8583 F42, 1-15 printable
    /// ASCII characters), sent with its next purchases and refunds.
    SetAcceptorId {
        merchant_id: String,
        /// The id the acquirer assigned.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        acceptor_id: Option<String>,
        /// Remove it instead (F42 is then left out).
        #[arg(long)]
        clear: bool,
    },
    /// List the merchants, one line each: id, acceptor id (`-` when none),
    /// enabled/disabled, name (no key or secret).
    List {
        /// One JSON object per line:
        /// `{"merchant_id","name","notify_url","acceptor_id","disabled","created_at"}`.
        #[arg(long)]
        json: bool,
    },
    /// Give the merchant a new webhook secret and print it, once. Webhooks
    /// carry a second `v1=` signature with the old secret for the overlap.
    RotateWebhookSecret {
        merchant_id: String,
        /// Overlap in seconds; default `webhooks.secret_overlap_seconds`.
        #[arg(long)]
        overlap_seconds: Option<u64>,
        /// Print `{"merchant_id","webhook_secret","old_secret_signs_until_ms"}`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// List events, newest first.
    List {
        /// Only events given up on after the retry window.
        #[arg(long)]
        failed: bool,
        /// Only this merchant's events.
        #[arg(long)]
        merchant: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Make an event due again now (attempts so far stay counted).
    Redeliver {
        /// The event id (`evt_…`).
        event_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Load and validate the configuration; print it with secrets masked.
    Check,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::init(&settings.log);
    match cli.command {
        Command::Serve => {
            let app = App::build(settings).await?;
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                app::shutdown_signal().await;
                trigger.cancel();
            });
            app.run(shutdown).await
        }
        Command::Migrate => {
            let store = app::open_store(&settings).await?;
            store.close().await;
            println!(
                "migrations applied to {}",
                crate::config::redact_url_password(&settings.database.url)
            );
            Ok(())
        }
        Command::Merchant { command } => {
            // A refused URL stops the command before any file is created.
            if let MerchantCommand::Add { notify_url, .. } = &command {
                check_notify_url(&settings, notify_url.as_deref())?;
            }
            // So is a bad acceptor id.
            if let MerchantCommand::Add {
                acceptor_id: Some(a),
                ..
            }
            | MerchantCommand::SetAcceptorId {
                acceptor_id: Some(a),
                ..
            } = &command
            {
                crate::domain::AcceptorId::parse(a)
                    .map_err(|e| anyhow::anyhow!("--acceptor-id: {}", e.message))?;
            }
            merchant(&settings, command).await
        }
        Command::Webhooks { command } => webhooks(&settings, command).await,
        Command::Bank {
            command:
                BankCommand::Serve {
                    listen,
                    allow_remote,
                },
        } => bank_serve(&settings, listen, allow_remote).await,
        Command::Bank {
            command: BankCommand::Cards { json },
        } => bank_cards(&settings, json),
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            print!("{}", settings.redacted_toml());
            println!("# configuration is valid");
            Ok(())
        }
    }
}

fn print_new_merchant(m: &crate::merchants::NewMerchant, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(m).context("encoding")?);
    } else {
        println!("merchant_id:    {}", m.merchant_id);
        println!("api_key:        {}", m.api_key);
        println!("webhook_secret: {}", m.webhook_secret);
        println!("(shown once: store the key and secret now)");
    }
    Ok(())
}

fn print_rotated_key(
    k: &crate::merchants::RotatedKey,
    overlap_seconds: u64,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(k).context("encoding")?);
    } else {
        println!("merchant_id: {}", k.merchant_id);
        println!("api_key:     {}", k.api_key);
        match k.old_key_valid_until_ms {
            Some(_) => println!("(the old key works {overlap_seconds} s more)"),
            None => println!("(the old key no longer works)"),
        }
        println!("(shown once: store the key now)");
    }
    Ok(())
}

/// `voicepay merchant set-acceptor-id`: sets or (with `None`) clears it.
async fn set_acceptor_id(
    store: &crate::store::Store,
    merchant_id: &str,
    acceptor_id: Option<&str>,
) -> anyhow::Result<()> {
    crate::merchants::set_acceptor_id(store, merchant_id, acceptor_id).await?;
    match acceptor_id {
        Some(a) => println!("{merchant_id}: card acceptor id (F42) is now {a}"),
        None => println!("{merchant_id}: card acceptor id (F42) removed"),
    }
    Ok(())
}

/// `voicepay merchant list`: one line (or JSON object) per merchant.
async fn list_merchants(store: &crate::store::Store, json: bool) -> anyhow::Result<()> {
    for m in store.merchants().await.context("reading the merchants")? {
        if json {
            println!("{}", serde_json::to_string(&m).context("encoding")?);
        } else {
            println!(
                "{}  {:<15}  {:<8}  {}",
                m.merchant_id,
                m.acceptor_id.as_deref().unwrap_or("-"),
                if m.disabled { "disabled" } else { "enabled" },
                m.name
            );
        }
    }
    Ok(())
}

/// `voicepay merchant …`: on-boarding and the key lifecycle.
async fn merchant(settings: &Settings, command: MerchantCommand) -> anyhow::Result<()> {
    use crate::merchants;
    let store = app::open_store(settings).await?;
    let result = async {
        match command {
            MerchantCommand::Add {
                name,
                notify_url,
                acceptor_id,
                json,
            } => {
                let vault = Vault::new(&KeyRing::load(&settings.crypto)?);
                let (url, acceptor) = (notify_url.as_deref(), acceptor_id.as_deref());
                let m = merchants::create_with(&store, &vault, &name, url, acceptor).await?;
                print_new_merchant(&m, json)?;
            }
            MerchantCommand::RotateKey {
                merchant_id,
                overlap_seconds,
                json,
            } => {
                let k = merchants::rotate_key(&store, &merchant_id, overlap_seconds).await?;
                print_rotated_key(&k, overlap_seconds, json)?;
            }
            MerchantCommand::RevokeKey {
                merchant_id,
                previous,
            } => {
                merchants::revoke_key(&store, &merchant_id, previous).await?;
                if previous {
                    println!("{merchant_id}: the replaced API key no longer works");
                } else {
                    println!("{merchant_id}: API key revoked; `voicepay merchant rotate-key {merchant_id}` issues a new one");
                }
            }
            MerchantCommand::Disable { merchant_id } => {
                merchants::set_enabled(&store, &merchant_id, false).await?;
                println!("{merchant_id} is disabled");
            }
            MerchantCommand::Enable { merchant_id } => {
                merchants::set_enabled(&store, &merchant_id, true).await?;
                println!("{merchant_id} is enabled");
            }
            MerchantCommand::SetAcceptorId {
                merchant_id,
                acceptor_id,
                clear: _,
            } => set_acceptor_id(&store, &merchant_id, acceptor_id.as_deref()).await?,
            MerchantCommand::List { json } => list_merchants(&store, json).await?,
            MerchantCommand::RotateWebhookSecret {
                merchant_id,
                overlap_seconds,
                json,
            } => {
                let vault = Vault::new(&KeyRing::load(&settings.crypto)?);
                let overlap = overlap_seconds.unwrap_or(settings.webhooks.secret_overlap_seconds);
                let s = merchants::rotate_webhook_secret(&store, &vault, &merchant_id, overlap)
                    .await?;
                if json {
                    println!("{}", serde_json::to_string(&s).context("encoding")?);
                } else {
                    println!("merchant_id:    {}", s.merchant_id);
                    println!("webhook_secret: {}", s.webhook_secret);
                    println!("(the old secret also signs webhooks for {overlap} s; shown once: store the secret now)");
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result
}

async fn webhooks(settings: &Settings, command: WebhooksCommand) -> anyhow::Result<()> {
    use crate::views::EventView;
    let store = app::open_store(settings).await?;
    let result = match command {
        WebhooksCommand::List {
            failed,
            merchant,
            limit,
            json,
        } => {
            let rows = store
                .list_webhooks(&crate::store::WebhookFilter {
                    merchant_id: merchant.as_deref(),
                    status: failed.then_some("failed"),
                    before: None,
                    limit: limit.clamp(1, 10_000),
                })
                .await?;
            for r in &rows {
                let view = EventView::new(r);
                if json {
                    let mut v = serde_json::to_value(&view).context("encoding")?;
                    v["merchant_id"] = r.merchant_id.clone().into();
                    // The operator sees the detailed reason; merchants only the class.
                    v["last_error"] = r.last_error.clone().into();
                    println!("{v}");
                } else {
                    println!(
                        "{}  {:<18} {}  {}  {:<9} attempts={} {}",
                        view.id,
                        view.kind,
                        view.order_id,
                        r.merchant_id,
                        view.status.as_str(),
                        view.attempts,
                        r.last_error.as_deref().unwrap_or("")
                    );
                }
            }
            if !json && rows.is_empty() {
                println!("no events");
            }
            Ok(())
        }
        WebhooksCommand::Redeliver { event_id } => {
            match store
                .redeliver_webhook(&event_id, None, crate::store::now_ms())
                .await?
            {
                crate::store::Redelivery::Due(r) => {
                    println!("{} is due now (attempts so far: {})", r.id, r.attempts);
                    Ok(())
                }
                crate::store::Redelivery::NotFound => {
                    Err(anyhow::anyhow!("no webhook event {event_id}"))
                }
                crate::store::Redelivery::InFlight(_) => Err(anyhow::anyhow!(
                    "webhook event {event_id} is being sent right now; try again when that attempt is over"
                )),
            }
        }
    };
    store.close().await;
    result
}

/// `voicepay bank cards`: the stub issuer's test cards, masked, with their
/// balances and today's wrong secrets, as its state file says now.
fn bank_cards(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let path = settings.stub_state_path();
    // Nothing is verified here, so no zone PIN key is needed (and
    // none is generated by looking).
    let no_pins = crate::crypto::ZonePinKey::from_bytes(&[0u8; 32])?;
    let issuer = crate::bank::StubIssuer::load(&settings.bank.stub_cards, no_pins)
        .context("loading bank.stub_cards")?
        .inspect_state_file(&path)?;
    let cards = issuer.cards();
    if json {
        let out = serde_json::json!({ "state": path, "cards": cards });
        println!("{out}");
    } else {
        println!("# stub issuer state: {}", path.display());
        for c in cards {
            println!(
                "{}  {:<6}  {:>14} fen  wrong secrets today: {}  ({})",
                c.card, c.kind, c.available_fen, c.wrong_pins_today, c.bank
            );
        }
    }
    Ok(())
}

/// `voicepay bank serve`: the stub issuer behind the ISO 8583 host, on
/// `listen` (loopback unless `allow_remote`), until SIGTERM or ctrl-c.
async fn bank_serve(
    settings: &Settings,
    listen: std::net::SocketAddr,
    allow_remote: bool,
) -> anyhow::Result<()> {
    use crate::bank::iso8583::host::IssuerHost;
    check_host_listen(listen, allow_remote)?;
    let link = &settings.bank.iso8583;
    if link.zone_pin_key.is_empty() {
        anyhow::bail!(
            "bank.iso8583.zone_pin_key (and zone_pin_key_id) is required: \
             the host deciphers F52 PIN blocks with it"
        );
    }
    let zpk = crate::crypto::Zpk::from_hex(&link.zone_pin_key_id, &link.zone_pin_key)
        .context("bank.iso8583.zone_pin_key")?;
    let (zpk_id, kcv) = (zpk.id().to_owned(), zpk.kcv().to_owned());
    let state = settings.stub_state_path();
    // PINs reach the host as format 0 blocks under the link's key only; the
    // stub's own (format 4) key is never used here.
    let unused = crate::crypto::ZonePinKey::from_bytes(&[0u8; 32])?;
    let issuer = crate::bank::StubIssuer::load(&settings.bank.stub_cards, unused)
        .context("loading bank.stub_cards")?
        .with_link_zpk(zpk)
        .with_state_file(&state)
        .with_context(|| format!("opening the stub issuer's state {}", state.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("the listening address")?;
    tracing::info!(%addr, zpk_id = %zpk_id, kcv = %kcv, state = %state.display(), "ISO 8583 issuer host ready");
    println!(
        "voicepay bank serve: ISO 8583 issuer host listening on {addr} \
         (zone PIN key {zpk_id}, KCV {kcv}; state {})",
        state.display()
    );
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        app::shutdown_signal().await;
        trigger.cancel();
    });
    std::sync::Arc::new(IssuerHost::new(issuer))
        .serve(listener, shutdown)
        .await;
    tracing::info!("ISO 8583 issuer host stopped");
    Ok(())
}

/// `bank serve --listen`: loopback unless `--allow-remote`, as the demo
/// page's `demo.listen` needs `demo.allow_remote`.
fn check_host_listen(listen: std::net::SocketAddr, allow_remote: bool) -> anyhow::Result<()> {
    if listen.ip().is_loopback() || allow_remote {
        return Ok(());
    }
    anyhow::bail!(
        "--listen {listen} is not a loopback address: the issuer host moves the test cards' \
         money and checks their PINs for anyone who connects; keep it on 127.0.0.1 or ::1, \
         or pass --allow-remote to expose it on purpose"
    )
}

/// `merchant add --notify-url`: the same rule as an order's `notify_url`
/// (https unless `webhooks.allow_http`, no internal address unless listed);
/// it is checked again, resolved, at every delivery.
fn check_notify_url(settings: &Settings, notify_url: Option<&str>) -> anyhow::Result<()> {
    if let Some(url) = notify_url.and_then(|u| url::Url::parse(u).ok()) {
        crate::notify::TargetPolicy::new(&settings.webhooks)
            .check(&url)
            .map_err(|e| anyhow::anyhow!("--notify-url: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_host_listen;

    #[test]
    fn bank_serve_listens_on_loopback_unless_allowed() {
        for ok in ["127.0.0.1:8583", "[::1]:8583", "127.0.0.1:0"] {
            check_host_listen(ok.parse().unwrap(), false).unwrap();
        }
        let remote = "0.0.0.0:8583".parse().unwrap();
        let err = check_host_listen(remote, false).unwrap_err().to_string();
        assert!(
            err.contains("--allow-remote") && err.contains("0.0.0.0:8583"),
            "{err}"
        );
        check_host_listen(remote, true).unwrap();
        let lan = "192.168.1.10:8583".parse().unwrap();
        assert!(check_host_listen(lan, false).is_err());
    }
}
