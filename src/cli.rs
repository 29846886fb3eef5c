//! The command line: `serve`, `migrate`, `merchant add`, `config check`.

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
    /// Run the daemon: API, and the workers later issues add.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage merchants.
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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
        /// Print `{"merchant_id","api_key","webhook_secret"}`.
        #[arg(long)]
        json: bool,
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
        Command::Merchant {
            command:
                MerchantCommand::Add {
                    name,
                    notify_url,
                    json,
                },
        } => {
            let store = app::open_store(&settings).await?;
            let vault = Vault::new(&KeyRing::load(&settings.crypto)?);
            let m = crate::merchants::create(&store, &vault, &name, notify_url.as_deref()).await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string(&m).context("encoding")?);
            } else {
                println!("merchant_id:    {}", m.merchant_id);
                println!("api_key:        {}", m.api_key);
                println!("webhook_secret: {}", m.webhook_secret);
                println!("(shown once: store the key and secret now)");
            }
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            print!("{}", settings.redacted_toml());
            println!("# configuration is valid");
            Ok(())
        }
    }
}
