//! The `holdline` binary: parse the command line, load the configuration, run the gateway
//! until SIGINT/SIGTERM.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = holdline::config::Cli::parse();
    let config = holdline::config::Config::load(&cli)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(holdline::app::run(config, holdline::app::shutdown_signal()))
}
