use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = voicepay::cli::Cli::parse();
    match voicepay::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voicepay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
