//! The command line. The seed's commands and flag names (camelCase) are kept exactly:
//! `meeting-appliance apiserver --secret S --mysqlAddress H:P … --mailServer a --mailPort 25 …`.
//! Every flag is also accepted by the all-in-one command (no subcommand) as an override of
//! the config file. Flags are applied last, over file and environment (see `config`).

use crate::config::{self, Config, MailServer, MailTls, Role};
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "meeting-appliance",
    version,
    about = "Self-hosted video meetings: one binary, five roles (apiserver, sfuserver, turnserver, fsserver, allocateserver)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The hub: accounts, meetings, mail, the web client and HTTP API.
    Apiserver(Flags),
    /// The WebRTC media relay.
    Sfuserver(Flags),
    /// The TURN relay for people behind strict firewalls.
    Turnserver(Flags),
    /// Storage for the images and files of meeting notes.
    Fsserver(Flags),
    /// Assigns sfu, turn and fs servers to meetings (the seed's allocateserver protocol).
    /// Its `--config` file is an allocate.toml (see config/allocate.toml).
    Allocateserver(AllocateArgs),
    /// Validate the configuration and print it, secrets masked.
    CheckConfig(Flags),
    /// Test a TURN server (ours or coturn): allocate over UDP and TCP, relay to itself, and
    /// print what works.
    TurnCheck(TurnCheckArgs),
    /// Check this host for what the configured roles need (open files, UDP buffers, free
    /// ports, database and mail servers reachable, the domain resolving here) and print what
    /// to fix. Exit status 1 when something needs fixing.
    Preflight(Flags),
    /// Copy a consistent snapshot of a (running) single box into a new folder: the SQLite
    /// database, note files, secret and certificates.
    Backup(BackupArgs),
    /// Restore a backup into a new, empty data dir (--dataDir NEW).
    Restore(RestoreArgs),
    /// Load an appliance with real WebRTC participants (str0m) and report forwarded
    /// packets, loss, latency and the server's CPU and memory, stepping the load up.
    Loadtest(crate::loadtest::LoadtestArgs),
}

#[derive(Args, Debug, Clone)]
pub struct AllocateArgs {
    /// Print the report (reservations, running and pending servers, server-hours per day)
    /// from the saved state, and exit.
    #[arg(long)]
    pub report: bool,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// The new folder to write the backup into (must not exist or be empty).
    #[arg(long)]
    pub to: PathBuf,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// A folder written by `meeting-appliance backup`.
    #[arg(long)]
    pub from: PathBuf,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Args, Debug, Clone)]
pub struct TurnCheckArgs {
    /// The TURN server, host:port (e.g. turn.example.com:3478).
    #[arg(long)]
    pub server: String,
    /// The deployment secret. Default: the one generated into the data dir.
    #[arg(long)]
    pub secret: Option<String>,
    /// The data dir holding the generated secret.
    #[arg(long = "dataDir")]
    pub data_dir: Option<PathBuf>,
    /// The server's TURN-over-TLS port (checked when something listens there).
    #[arg(long = "tlsPort", default_value_t = 5349)]
    pub tls_port: u16,
    /// PEM file of a private CA that signed the server's certificate (default: public roots).
    #[arg(long = "tlsCa")]
    pub tls_ca: Option<PathBuf>,
}

/// Flags shared by every command. Names are the seed's (camelCase) or in its style.
#[derive(Args, Debug, Default, Clone)]
pub struct Flags {
    /// Config file (TOML); see config/appliance.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The deployment secret shared by all roles.
    #[arg(long)]
    pub secret: Option<String>,
    /// Folder for the database, secret, certificates and files.
    #[arg(long = "dataDir")]
    pub data_dir: Option<PathBuf>,
    /// Address the HTTP(S) listener binds, e.g. 0.0.0.0:443.
    #[arg(long)]
    pub listen: Option<String>,
    /// Public host:port of this server.
    #[arg(long = "domainaddress")]
    pub domain_address: Option<String>,
    /// PEM certificate chain.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long)]
    pub certkey: Option<PathBuf>,
    /// The apiserver a role on another host registers with (host:port).
    #[arg(long)]
    pub apiserver: Option<String>,
    #[arg(long = "mysqlAddress")]
    pub mysql_address: Option<String>,
    #[arg(long = "mysqlUser")]
    pub mysql_user: Option<String>,
    #[arg(long = "mysqlPassword")]
    pub mysql_password: Option<String>,
    #[arg(long = "mysqlDatabase")]
    pub mysql_database: Option<String>,
    /// A database URL (sqlite://, mysql://, postgres://) instead of the mysql* flags.
    #[arg(long = "databaseUrl")]
    pub database_url: Option<String>,
    /// SMTP server; repeat the set (--mailServer --mailPort --mailUsername --mailFrom …) per server.
    #[arg(long = "mailServer")]
    pub mail_server: Vec<String>,
    #[arg(long = "mailPort")]
    pub mail_port: Vec<u16>,
    #[arg(long = "mailUsername")]
    pub mail_username: Vec<String>,
    #[arg(long = "mailPassword")]
    pub mail_password: Vec<String>,
    #[arg(long = "mailFrom")]
    pub mail_from: Vec<String>,
    /// Recipient domains the preceding --mailServer serves (comma-separated).
    #[arg(long = "mailDomains")]
    pub mail_domains: Vec<String>,
    /// STARTTLS/TLS mode of the preceding --mailServer: auto, starttls, tls, none.
    #[arg(long = "mailTls")]
    pub mail_tls: Vec<String>,
    /// URL of an allocator speaking the seed's protocol.
    #[arg(long = "allocateserver")]
    pub allocateserver: Option<String>,
    /// TURN port (the seed's turnserver --port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Public/relay IP address(es) of this server.
    #[arg(long)]
    pub ip: Vec<IpAddr>,
    /// The sfuserver's media UDP port.
    #[arg(long = "udpPort")]
    pub udp_port: Option<u16>,
    /// Media worker threads of the sfuserver (0: one per core).
    #[arg(long = "sfuWorkers")]
    pub sfu_workers: Option<usize>,
    /// Storage folder of the fsserver.
    #[arg(long)]
    pub directory: Option<PathBuf>,
    /// Email domains whose people may create meetings (comma-separated).
    #[arg(long = "allowedDomains", value_delimiter = ',')]
    pub allowed_domains: Vec<String>,
    /// Log filter, e.g. info or debug.
    #[arg(long = "logLevel")]
    pub log_level: Option<String>,
    /// Log one JSON object per line.
    #[arg(long = "logJson")]
    pub log_json: bool,
    /// Sign-in methods offered (comma-separated): email_code, oidc, ldap.
    #[arg(long = "authMethods", value_delimiter = ',')]
    pub auth_methods: Vec<String>,
    /// OpenID Connect: the provider's issuer URL (discovery).
    #[arg(long = "oidcDiscoveryUrl")]
    pub oidc_discovery_url: Option<String>,
    #[arg(long = "oidcClientId")]
    pub oidc_client_id: Option<String>,
    #[arg(long = "oidcClientSecret")]
    pub oidc_client_secret: Option<String>,
    /// The provider's name on the sign-in button.
    #[arg(long = "oidcName")]
    pub oidc_name: Option<String>,
    /// LDAP / Active Directory: ldaps://host:636 or ldap://host:389 (with --ldapStarttls).
    #[arg(long = "ldapUrl")]
    pub ldap_url: Option<String>,
    #[arg(long = "ldapStarttls")]
    pub ldap_starttls: bool,
    /// PEM file of the CA that signed the directory's certificate.
    #[arg(long = "ldapCaFile")]
    pub ldap_ca_file: Option<PathBuf>,
    #[arg(long = "ldapBindDn")]
    pub ldap_bind_dn: Option<String>,
    #[arg(long = "ldapBindPassword")]
    pub ldap_bind_password: Option<String>,
    #[arg(long = "ldapUserBase")]
    pub ldap_user_base: Option<String>,
    #[arg(long = "ldapUserFilter")]
    pub ldap_user_filter: Option<String>,
    /// How long the audit log is kept, e.g. 365days.
    #[arg(long = "auditRetention")]
    pub audit_retention: Option<String>,
}

/// What `main` should do after parsing.
pub enum Action {
    Run(Box<Config>),
    CheckConfig(Box<Config>),
    TurnCheck(TurnCheckArgs),
    Preflight(Box<Config>),
    /// `allocateserver --report`: print the allocator's report.
    AllocateReport(Box<Config>),
    Backup {
        cfg: Box<Config>,
        to: PathBuf,
        /// The config file in use, copied into the backup.
        config_file: Option<PathBuf>,
    },
    Restore {
        cfg: Box<Config>,
        from: PathBuf,
    },
    Loadtest(crate::loadtest::LoadtestArgs),
}

/// Parses arguments, then loads file + environment and applies the flags on top.
pub fn parse<I, T>(args: I, env: &[(String, String)]) -> anyhow::Result<Action>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    if let Some(Command::TurnCheck(a)) = &cli.command {
        return Ok(Action::TurnCheck(a.clone()));
    }
    if let Some(Command::Loadtest(a)) = &cli.command {
        return Ok(Action::Loadtest(a.clone()));
    }
    // Flags may stand before the subcommand (`--config f check-config`) or after it; those
    // after it win.
    let sub = match &cli.command {
        None => None,
        Some(cmd) => {
            let (_, sub_matches) = matches
                .subcommand()
                .ok_or_else(|| anyhow::anyhow!("no subcommand"))?;
            let (flags, role) = match cmd {
                Command::Apiserver(f) => (f, Some(Role::Apiserver)),
                Command::Sfuserver(f) => (f, Some(Role::Sfuserver)),
                Command::Turnserver(f) => (f, Some(Role::Turnserver)),
                Command::Fsserver(f) => (f, Some(Role::Fsserver)),
                Command::Allocateserver(a) if a.report => (&a.flags, None),
                Command::Allocateserver(a) => (&a.flags, Some(Role::Allocateserver)),
                Command::CheckConfig(f) | Command::Preflight(f) => (f, None),
                Command::Backup(a) => (&a.flags, None),
                Command::Restore(a) => (&a.flags, None),
                Command::TurnCheck(_) => anyhow::bail!("turn-check takes no role flags"),
                Command::Loadtest(_) => anyhow::bail!("loadtest takes no role flags"),
            };
            Some((flags, sub_matches, role))
        }
    };
    let check = matches!(cli.command, Some(Command::CheckConfig(_)));
    let file = sub
        .as_ref()
        .and_then(|(f, _, _)| f.config.clone())
        .or_else(|| cli.flags.config.clone());
    let allocate = matches!(cli.command, Some(Command::Allocateserver(_)));
    let mut cfg = match file.as_deref() {
        Some(f) if allocate => config::load_allocate(f, env)?,
        f => config::load(f, env)?,
    };
    if let Some((_, _, Some(role))) = &sub {
        cfg.roles = vec![*role];
    }
    apply_flags(&mut cfg, &cli.flags, &matches)?;
    if let Some((flags, sub_matches, _)) = &sub {
        apply_flags(&mut cfg, flags, sub_matches)?;
    }
    cfg.validate()?;
    let cfg = Box::new(cfg);
    Ok(match cli.command {
        _ if check => Action::CheckConfig(cfg),
        Some(Command::Preflight(_)) => Action::Preflight(cfg),
        Some(Command::Allocateserver(a)) if a.report => Action::AllocateReport(cfg),
        Some(Command::Backup(a)) => Action::Backup {
            cfg,
            to: a.to,
            config_file: file,
        },
        Some(Command::Restore(a)) => Action::Restore { cfg, from: a.from },
        _ => Action::Run(cfg),
    })
}

fn apply_flags(cfg: &mut Config, f: &Flags, m: &ArgMatches) -> anyhow::Result<()> {
    fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
        if let Some(v) = v {
            *dst = v.clone();
        }
    }
    fn set_opt<T: Clone>(dst: &mut Option<T>, v: &Option<T>) {
        if v.is_some() {
            *dst = v.clone();
        }
    }
    set_opt(&mut cfg.secret, &f.secret);
    set(&mut cfg.data_dir, &f.data_dir);
    set(&mut cfg.listen, &f.listen);
    set_opt(&mut cfg.domain_address, &f.domain_address);
    set_opt(&mut cfg.cert, &f.cert);
    set_opt(&mut cfg.cert_key, &f.certkey);
    set_opt(&mut cfg.apiserver, &f.apiserver);
    set_opt(&mut cfg.database.mysql_address, &f.mysql_address);
    set_opt(&mut cfg.database.mysql_user, &f.mysql_user);
    set_opt(&mut cfg.database.mysql_password, &f.mysql_password);
    set_opt(&mut cfg.database.mysql_database, &f.mysql_database);
    set_opt(&mut cfg.database.url, &f.database_url);
    if f.mysql_address.is_some() && f.database_url.is_none() {
        // The seed's flags name MySQL explicitly: they win over a URL from the file.
        cfg.database.url = None;
    }
    set_opt(&mut cfg.allocator.url, &f.allocateserver);
    if let Some(p) = f.port {
        cfg.turn.port = p;
    }
    if let Some(ip) = f.ip.first() {
        cfg.turn.ip = Some(*ip);
        cfg.sfu.ip = f.ip.clone();
    }
    if let Some(p) = f.udp_port {
        cfg.sfu.udp_port = p;
    }
    if let Some(w) = f.sfu_workers {
        cfg.sfu.workers = w;
    }
    set_opt(&mut cfg.fs.directory, &f.directory);
    if !f.allowed_domains.is_empty() {
        cfg.auth.allowed_domains = f.allowed_domains.clone();
    }
    set(&mut cfg.log.level, &f.log_level);
    if f.log_json {
        cfg.log.json = true;
    }
    let servers = mail_sets(m)?;
    if !servers.is_empty() {
        cfg.mail.servers = servers;
    }
    apply_auth_flags(cfg, f)
}

/// The sign-in flags: `--authMethods`, `--oidc*`, `--ldap*`, `--auditRetention`.
fn apply_auth_flags(cfg: &mut Config, f: &Flags) -> anyhow::Result<()> {
    if !f.auth_methods.is_empty() {
        // Repeated flags add up, in order; a method named twice counts once.
        let mut methods = Vec::new();
        for m in &f.auth_methods {
            let m = config::AuthMethod::parse(m.trim()).ok_or_else(|| {
                anyhow::anyhow!("--authMethods {m:?}: use email_code, oidc or ldap")
            })?;
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
        cfg.auth.methods = methods;
    }
    let o = &mut cfg.auth.oidc;
    for (dst, v) in [
        (&mut o.discovery_url, &f.oidc_discovery_url),
        (&mut o.client_id, &f.oidc_client_id),
        (&mut o.name, &f.oidc_name),
    ] {
        if let Some(v) = v {
            *dst = v.clone();
        }
    }
    if f.oidc_client_secret.is_some() {
        o.client_secret = f.oidc_client_secret.clone();
    }
    let l = &mut cfg.auth.ldap;
    for (dst, v) in [
        (&mut l.url, &f.ldap_url),
        (&mut l.bind_dn, &f.ldap_bind_dn),
        (&mut l.user_base, &f.ldap_user_base),
        (&mut l.user_filter, &f.ldap_user_filter),
    ] {
        if let Some(v) = v {
            *dst = v.clone();
        }
    }
    if f.ldap_bind_password.is_some() {
        l.bind_password = f.ldap_bind_password.clone();
    }
    if f.ldap_ca_file.is_some() {
        l.ca_file = f.ldap_ca_file.clone();
    }
    if f.ldap_starttls {
        l.starttls = true;
    }
    if let Some(r) = &f.audit_retention {
        cfg.audit.retention = humantime::parse_duration(r.trim())
            .map(config::Dur)
            .map_err(|e| anyhow::anyhow!("--auditRetention {r:?}: {e}; write e.g. 365days"))?;
    }
    Ok(())
}

/// Groups the repeatable mail flags into one set per `--mailServer`, by position: each
/// `--mailPort`/`--mailUsername`/… belongs to the nearest `--mailServer` before it.
fn mail_sets(m: &ArgMatches) -> anyhow::Result<Vec<MailServer>> {
    let mut servers: Vec<(usize, MailServer)> = Vec::new();
    if let (Some(idx), Some(vals)) = (
        m.indices_of("mail_server"),
        m.get_many::<String>("mail_server"),
    ) {
        for (i, host) in idx.zip(vals) {
            servers.push((i, MailServer::new(host.clone())));
        }
    }
    fn owner<'a>(
        servers: &'a mut [(usize, MailServer)],
        at: usize,
        flag: &str,
    ) -> anyhow::Result<&'a mut MailServer> {
        servers
            .iter_mut()
            .rev()
            .find(|(i, _)| *i < at)
            .map(|(_, s)| s)
            .ok_or_else(|| anyhow::anyhow!("--{flag} must follow the --mailServer it belongs to"))
    }
    macro_rules! attach {
        ($id:literal, $flag:literal, $ty:ty, |$s:ident, $v:ident| $body:expr) => {
            if let (Some(idx), Some(vals)) = (m.indices_of($id), m.get_many::<$ty>($id)) {
                for (at, $v) in idx.zip(vals) {
                    let $s = owner(&mut servers, at, $flag)?;
                    $body;
                }
            }
        };
    }
    attach!("mail_port", "mailPort", u16, |s, v| s.port = *v);
    attach!("mail_username", "mailUsername", String, |s, v| s.username =
        Some(v.clone()));
    attach!("mail_password", "mailPassword", String, |s, v| s.password =
        Some(v.clone()));
    attach!("mail_from", "mailFrom", String, |s, v| s.from =
        Some(v.clone()));
    attach!("mail_domains", "mailDomains", String, |s, v| s
        .domains
        .extend(
            v.split(',')
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
        ));
    if let (Some(idx), Some(vals)) = (m.indices_of("mail_tls"), m.get_many::<String>("mail_tls")) {
        for (at, v) in idx.zip(vals) {
            let tls = match v.as_str() {
                "auto" => MailTls::Auto,
                "starttls" => MailTls::Starttls,
                "tls" => MailTls::Tls,
                "none" => MailTls::None,
                other => anyhow::bail!("--mailTls {other:?}: use auto, starttls, tls or none"),
            };
            owner(&mut servers, at, "mailTls")?.tls = tls;
        }
    }
    Ok(servers.into_iter().map(|(_, s)| s).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> anyhow::Result<Config> {
        match parse(
            std::iter::once("meeting-appliance").chain(args.iter().copied()),
            &[],
        )? {
            Action::Run(c)
            | Action::CheckConfig(c)
            | Action::Preflight(c)
            | Action::AllocateReport(c) => Ok(*c),
            Action::Backup { cfg, .. } | Action::Restore { cfg, .. } => Ok(*cfg),
            Action::TurnCheck(_) => anyhow::bail!("turn-check is not a configuration"),
            Action::Loadtest(_) => anyhow::bail!("loadtest is not a configuration"),
        }
    }

    #[test]
    fn seed_apiserver_command_parses_two_mail_servers() {
        let c = run(&[
            "apiserver",
            "--secret",
            "xxx",
            "--mysqlAddress",
            "127.0.0.1:3306",
            "--mysqlUser",
            "root",
            "--mysqlPassword",
            "111111",
            "--mysqlDatabase",
            "Meeting",
            "--domainaddress",
            "apiserver.com:443",
            "--cert",
            "/path/to/cert.pem",
            "--certkey",
            "/path/to/certkey.pem",
            "--mailServer",
            "a",
            "--mailPort",
            "25",
            "--mailUsername",
            "hello",
            "--mailFrom",
            "hi@hello.com",
            "--mailServer",
            "b",
            "--mailPort",
            "587",
            "--mailFrom",
            "out@hello.com",
            "--mailDomains",
            "hello.com,x.org",
            "--allocateserver",
            "http://192.168.1.2:80/path",
        ])
        .expect("the seed's command line parses");
        assert_eq!(c.roles, vec![Role::Apiserver]);
        assert_eq!(c.secret.as_deref(), Some("xxx"));
        assert_eq!(c.mail.servers.len(), 2);
        let (a, b) = (&c.mail.servers[0], &c.mail.servers[1]);
        assert_eq!(
            (a.host.as_str(), a.port, a.username.as_deref()),
            ("a", 25, Some("hello"))
        );
        assert_eq!(a.from.as_deref(), Some("hi@hello.com"));
        assert_eq!(
            (b.host.as_str(), b.port, b.username.as_deref()),
            ("b", 587, None)
        );
        assert_eq!(b.domains, vec!["hello.com", "x.org"]);
        assert_eq!(
            c.database.effective_url(&c.data_dir),
            "mysql://root:111111@127.0.0.1:3306/Meeting"
        );
        assert_eq!(c.domain_address.as_deref(), Some("apiserver.com:443"));
        assert_eq!(
            c.allocator.url.as_deref(),
            Some("http://192.168.1.2:80/path")
        );
    }

    #[test]
    fn seed_role_commands_parse() {
        let c = run(&[
            "turnserver",
            "--secret",
            "xxx",
            "--port",
            "3478",
            "--ip",
            "1.2.3.4",
            "--apiserver",
            "apiserver.com:443",
        ])
        .expect("turnserver line");
        assert_eq!(c.roles, vec![Role::Turnserver]);
        assert_eq!(c.turn.port, 3478);
        assert_eq!(c.turn.ip, Some("1.2.3.4".parse().expect("ip")));
        let c = run(&[
            "fsserver",
            "--secret",
            "xxx",
            "--domainaddress",
            "fsserver.com:443",
            "--cert",
            "/c.pem",
            "--certkey",
            "/k.pem",
            "--directory",
            "/path/storage",
            "--apiserver",
            "apiserver.com:443",
        ])
        .expect("fsserver line");
        assert_eq!(c.fs.directory, Some(PathBuf::from("/path/storage")));
        let c = run(&[
            "sfuserver",
            "--secret",
            "xxx",
            "--domainaddress",
            "1.sfuserver.com:443",
            "--cert",
            "/c.pem",
            "--certkey",
            "/k.pem",
            "--apiserver",
            "apiserver.com:443",
        ])
        .expect("sfuserver line");
        assert_eq!(c.apiserver.as_deref(), Some("apiserver.com:443"));
    }

    #[test]
    fn garbage_flag_is_named() {
        let err = run(&["apiserver", "--garbage", "1"])
            .expect_err("unknown flag")
            .to_string();
        assert!(err.contains("--garbage"), "{err}");
    }

    #[test]
    fn mail_flag_before_server_is_an_error() {
        let err = run(&["--mailPort", "25", "--mailServer", "a"])
            .expect_err("orphan")
            .to_string();
        assert!(err.contains("--mailPort must follow"), "{err}");
    }

    #[test]
    fn role_without_apiserver_or_secret_is_refused() {
        let err = run(&["sfuserver", "--secret", "x"])
            .expect_err("no apiserver")
            .to_string();
        assert!(err.contains("--apiserver"), "{err}");
    }
}
