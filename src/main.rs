//! Thin: command line → config → logging → node::run.

use meeting_appliance::roles::turnserver;
use meeting_appliance::{backup, cli, logging, node, preflight};
use std::process::ExitCode;

fn main() -> ExitCode {
    let env: Vec<(String, String)> = std::env::vars().collect();
    match cli::parse(std::env::args_os(), &env) {
        Err(e) => {
            if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
                clap_err.exit();
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Ok(cli::Action::CheckConfig(cfg)) => {
            print!("{}", cfg.to_masked_toml());
            eprintln!("configuration is valid");
            ExitCode::SUCCESS
        }
        Ok(cli::Action::TurnCheck(a)) => turnserver::check::main(
            &a.server,
            a.secret.as_deref(),
            a.data_dir.as_ref(),
            a.tls_port,
            a.tls_ca.as_ref(),
        ),
        Ok(cli::Action::Loadtest(a)) => meeting_appliance::loadtest::main(&a),
        Ok(cli::Action::Preflight(cfg)) => preflight::main(&cfg),
        Ok(cli::Action::AllocateReport(cfg)) => {
            match meeting_appliance::roles::allocateserver::server::print_report(&cfg) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Ok(cli::Action::Backup {
            cfg,
            to,
            config_file,
        }) => backup::backup_main(&cfg, &to, config_file.as_deref()),
        Ok(cli::Action::Restore { cfg, from }) => backup::restore_main(&cfg, &from),
        Ok(cli::Action::Run(cfg)) => {
            logging::init(&cfg.log);
            match node::run(*cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
