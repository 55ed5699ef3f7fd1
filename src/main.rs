//! The `holdline` binary: parse the command line, load the configuration, run the gateway
//! until SIGINT/SIGTERM. A failure is printed once, on stderr, with what to do about it.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = holdline::config::Cli::parse();
    let config = match holdline::config::Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            // TOML errors end with a newline of their own.
            eprintln!("holdline: {}\nhint: {}", e.to_string().trim_end(), e.hint());
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(holdline::app::run(config, holdline::app::shutdown_signal()))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the whole chain on one line, each cause once.
            eprintln!("holdline: {e:#}");
            ExitCode::FAILURE
        }
    }
}
