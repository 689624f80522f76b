//! One typed configuration tree for every role.
//!
//! Precedence, lowest first: the defaults written in this file < the config file (TOML) <
//! environment variables `MEETING_<SECTION>__<KEY>` (e.g. `MEETING_AUTH__CODE_TTL=5m`) <
//! command-line flags (the seed's camelCase flags, applied in `cli.rs`). Every struct denies
//! unknown keys, so a typo is an error that names the key instead of a silently ignored line.
//! `config/appliance.toml` is the commented sample; a test checks it equals the defaults.

mod auth;
mod duration;
pub mod ipnet;

pub use duration::Dur;
pub use ipnet::IpNet;

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The five roles of the seed. A process runs any subset; a single box runs all five.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Apiserver,
    Sfuserver,
    Turnserver,
    Fsserver,
    Allocateserver,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Apiserver,
        Role::Sfuserver,
        Role::Turnserver,
        Role::Fsserver,
        Role::Allocateserver,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Role::Apiserver => "apiserver",
            Role::Sfuserver => "sfuserver",
            Role::Turnserver => "turnserver",
            Role::Fsserver => "fsserver",
            Role::Allocateserver => "allocateserver",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Roles this process runs. Default: all five (one box).
    pub roles: Vec<Role>,
    /// Deployment secret shared by all roles of one deployment. On a single box, when absent,
    /// one is generated into `data_dir/secret` (mode 0600) and reused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Every file the appliance keeps (SQLite database, secret, certificates, files) lives here.
    pub data_dir: PathBuf,
    /// Where the HTTP(S) listener binds.
    pub listen: String,
    /// The public `host:port` people reach this box at (the seed's `--domainaddress`).
    /// Absent: the listen address (a development box).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_address: Option<String>,
    /// PEM certificate chain and key; absent: see ARCHITECTURE.md section 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_key: Option<PathBuf>,
    /// For roles on other hosts: the apiserver's `host:port` to register with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apiserver: Option<String>,
    pub log: Log,
    pub database: Database,
    pub mail: Mail,
    pub auth: Auth,
    pub meetings: Meetings,
    pub allocator: Allocator,
    pub sfu: Sfu,
    pub turn: Turn,
    pub fs: Fs,
    pub tls: Tls,
    pub notes: Notes,
    pub audit: Audit,
    pub metrics: MetricsAccess,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            roles: Role::ALL.to_vec(),
            secret: None,
            data_dir: PathBuf::from("./meeting-data"),
            listen: "127.0.0.1:8080".into(),
            domain_address: None,
            cert: None,
            cert_key: None,
            apiserver: None,
            log: Log::default(),
            database: Database::default(),
            mail: Mail::default(),
            auth: Auth::default(),
            meetings: Meetings::default(),
            allocator: Allocator::default(),
            sfu: Sfu::default(),
            turn: Turn::default(),
            fs: Fs::default(),
            tls: Tls::default(),
            notes: Notes::default(),
            audit: Audit::default(),
            metrics: MetricsAccess::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter: "info", "debug", "meeting_appliance=debug,info".
    pub level: String,
    /// One JSON object per line instead of human-readable lines.
    pub json: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            json: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// A full URL (`sqlite://…`, `mysql://…`, `postgres://…`). Wins over the mysql_* keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The seed's MySQL/MariaDB settings (`--mysqlAddress` etc.).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql_password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql_database: Option<String>,
    /// Connection pool size.
    pub max_connections: u32,
    /// How long start-up keeps trying to reach the database before giving up.
    pub connect_timeout: Dur,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: None,
            mysql_address: None,
            mysql_user: None,
            mysql_password: None,
            mysql_database: None,
            max_connections: 10,
            connect_timeout: Dur::secs(30),
        }
    }
}

impl Database {
    /// The URL actually used: `url`, else MySQL from the seed's flags, else SQLite in the data dir.
    pub fn effective_url(&self, data_dir: &Path) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        if let Some(addr) = &self.mysql_address {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let user = enc(self.mysql_user.as_deref().unwrap_or("root"));
            let auth = match &self.mysql_password {
                Some(p) => format!("{user}:{}", enc(p)),
                None => user,
            };
            let db = self.mysql_database.as_deref().unwrap_or("Meeting");
            return format!("mysql://{auth}@{addr}/{db}");
        }
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("meeting.db").display()
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mail {
    /// SMTP servers. None: mail is written to the log (a development box).
    pub servers: Vec<MailServer>,
    /// The display name on outgoing mail.
    pub from_name: String,
    /// First retry delay for an undeliverable mail; doubles up to `retry_max`.
    pub retry_initial: Dur,
    pub retry_max: Dur,
    /// Delivery tries before a mail is given up (status `failed`, shown on the admin page).
    /// A permanent refusal (SMTP 5xx) gives up at once.
    pub max_attempts: u32,
    /// Mails one person's actions may queue per 24 hours (invitations, updates, notes).
    pub per_user_per_day: u32,
}

impl Default for Mail {
    fn default() -> Self {
        Mail {
            servers: Vec::new(),
            from_name: "Meetings".into(),
            retry_initial: Dur::secs(30),
            retry_max: Dur::secs(1800),
            max_attempts: 20,
            per_user_per_day: 1000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// Port 465: implicit TLS; with a username: STARTTLS required; otherwise STARTTLS if offered.
    Auto,
    /// STARTTLS required.
    Starttls,
    /// Implicit TLS (SMTPS).
    Tls,
    /// Plain text (an internal relay on a trusted network).
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailServer {
    pub host: String,
    #[serde(default = "default_mail_port")]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Sender address; default `meetings@<host>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Recipient domains this server serves (e.g. the company's own). Empty: the default server.
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default = "default_mail_tls")]
    pub tls: MailTls,
}

fn default_mail_port() -> u16 {
    587
}
fn default_mail_tls() -> MailTls {
    MailTls::Auto
}

impl MailServer {
    pub fn new(host: impl Into<String>) -> Self {
        MailServer {
            host: host.into(),
            port: default_mail_port(),
            username: None,
            password: None,
            from: None,
            domains: Vec::new(),
            tls: MailTls::Auto,
        }
    }
    pub fn from_address(&self) -> String {
        self.from
            .clone()
            .unwrap_or_else(|| format!("meetings@{}", self.host))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Email domains whose people may create meetings. Empty: everyone who signs in may.
    pub allowed_domains: Vec<String>,
    /// People who see the admin view.
    pub admin_emails: Vec<String>,
    /// A sign-in code is valid this long.
    pub code_ttl: Dur,
    /// Wrong tries allowed per code before it is void.
    pub code_max_attempts: u32,
    /// Codes sent to one address per hour, at the request of one client IP.
    pub codes_per_email_per_hour: u32,
    /// Codes requested from one client IP per hour.
    pub codes_per_ip_per_hour: u32,
    /// Codes sent to one address per hour, whoever asked (bounds the mail it gets).
    pub codes_per_email_per_hour_all_ips: u32,
    /// A session stays valid this long.
    pub session_ttl: Dur,
    /// Sign-in methods offered, in the order the sign-in page shows them. Any combination of
    /// `email_code`, `oidc` and `ldap`; guests joining by link need none of them.
    pub methods: Vec<AuthMethod>,
    /// Sessions from `oidc` and `ldap` are re-checked with the provider this often (OIDC:
    /// refresh; LDAP: the user looked up again). A user the provider disabled loses access,
    /// and their meeting connections are closed, within this interval.
    pub recheck_every: Dur,
    /// Password sign-in (`ldap`): wrong passwords allowed within `password_failure_window`
    /// for one login from one client IP, ...
    pub password_failures_per_login_per_ip: u32,
    /// ... from one client IP over all logins, ...
    pub password_failures_per_ip: u32,
    /// ... and for one login from all IPs together (bounds a distributed guess).
    pub password_failures_per_login_all_ips: u32,
    pub password_failure_window: Dur,
    pub oidc: Oidc,
    pub ldap: Ldap,
}

/// One way to sign in (`auth.methods`); also how a session was made (stored by
/// [`AuthMethod::name`]).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(
    rs_type = "String",
    db_type = "String(sea_orm::sea_query::StringLen::N(16))"
)]
pub enum AuthMethod {
    /// A one-time code by mail.
    #[sea_orm(string_value = "email_code")]
    EmailCode,
    /// OpenID Connect: authorization code flow with PKCE at the company's identity provider.
    #[sea_orm(string_value = "oidc")]
    Oidc,
    /// LDAP / Active Directory: username and password checked by binding as the user.
    #[sea_orm(string_value = "ldap")]
    Ldap,
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::EmailCode => "email_code",
            AuthMethod::Oidc => "oidc",
            AuthMethod::Ldap => "ldap",
        }
    }
    pub fn parse(s: &str) -> Option<AuthMethod> {
        match s {
            "email_code" => Some(AuthMethod::EmailCode),
            "oidc" => Some(AuthMethod::Oidc),
            "ldap" => Some(AuthMethod::Ldap),
            _ => None,
        }
    }
}

/// OpenID Connect sign-in (`[auth.oidc]`), used when `auth.methods` has `oidc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Oidc {
    /// The provider's name on the sign-in button: "Sign in with <name>".
    pub name: String,
    /// The issuer URL; discovery reads `<issuer>/.well-known/openid-configuration` (a URL
    /// ending in that is accepted too).
    pub discovery_url: String,
    pub client_id: String,
    /// We are a confidential client: the secret authenticates us at the token endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Scopes asked for; `offline_access` is added when the provider lists it (refresh tokens
    /// for the re-check).
    pub scopes: Vec<String>,
    /// The claim (ID token or userinfo) that lists the user's groups.
    pub groups_claim: String,
    /// Groups whose members may create meetings. Empty: everyone (within `allowed_domains`).
    pub create_groups: Vec<String>,
    /// Groups whose members are administrators (besides `admin_emails`).
    pub admin_groups: Vec<String>,
    /// Users are matched by verified email. Some providers (Entra ID) send no
    /// `email_verified`; set this only when the provider's emails are the company's own.
    pub accept_unverified_email: bool,
    /// Where the provider sends the browser back. Absent: `<public URL>/api/v1/auth/oidc/callback`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// PEM root of a private CA that the provider's HTTPS certificate chains to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long one request to the provider may take.
    pub timeout: Dur,
}

impl Default for Oidc {
    fn default() -> Self {
        Oidc {
            name: "single sign-on".into(),
            discovery_url: String::new(),
            client_id: String::new(),
            client_secret: None,
            scopes: ["openid", "email", "profile"].map(String::from).to_vec(),
            groups_claim: "groups".into(),
            create_groups: Vec::new(),
            admin_groups: Vec::new(),
            accept_unverified_email: false,
            redirect_url: None,
            ca_file: None,
            timeout: Dur::secs(10),
        }
    }
}

/// LDAP / Active Directory sign-in (`[auth.ldap]`), used when `auth.methods` has `ldap`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ldap {
    /// The directory's name on the sign-in form: "Sign in with <name>".
    pub name: String,
    /// `ldaps://host:636` (TLS from the start) or `ldap://host:389` (with `starttls`).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    pub starttls: bool,
    /// PEM file of the CA that signed the directory's certificate. Absent: the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The service account that searches for users. Empty: an anonymous search.
    pub bind_dn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_password: Option<String>,
    /// Where users are searched (subtree).
    pub user_base: String,
    /// Finds the user; `{login}` is what they typed (escaped). Add conditions that exclude
    /// disabled accounts, e.g. AD's `(!(userAccountControl:1.2.840.113556.1.4.803:=2))`.
    pub user_filter: String,
    /// The attribute holding the user's email address (the identity here).
    pub email_attribute: String,
    /// The attribute holding the display name (falls back to `cn`).
    pub name_attribute: String,
    /// Tells whether the user is in a group (searched on the group's DN); `{dn}` is the
    /// user's DN. AD nested groups: `(member:1.2.840.113556.1.4.1941:={dn})`.
    pub group_filter: String,
    /// DNs of groups whose members may create meetings. Empty: everyone (within
    /// `allowed_domains`). In the environment: one DN, or several separated by `;`.
    #[serde(deserialize_with = "dn_list")]
    pub create_groups: Vec<String>,
    /// DNs of groups whose members are administrators (besides `admin_emails`).
    #[serde(deserialize_with = "dn_list")]
    pub admin_groups: Vec<String>,
    /// How long connecting and each operation may take.
    pub timeout: Dur,
}

impl Default for Ldap {
    fn default() -> Self {
        Ldap {
            name: "your company account".into(),
            url: String::new(),
            starttls: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password: None,
            user_base: String::new(),
            user_filter:
                "(&(objectClass=person)(|(uid={login})(sAMAccountName={login})(mail={login})))"
                    .into(),
            email_attribute: "mail".into(),
            name_attribute: "displayName".into(),
            group_filter: "(|(member={dn})(uniqueMember={dn}))".into(),
            create_groups: Vec::new(),
            admin_groups: Vec::new(),
            timeout: Dur::secs(10),
        }
    }
}

/// A list of DNs from a TOML array, or from one string (the environment), where `;`
/// separates DNs (commas belong to the DNs themselves).
fn dn_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => s
            .split(';')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// Who may read `/metrics` (`[metrics]`). Open by default (it is on the same port as the
/// API); a box on the internet restricts it to the monitoring host, a token, or both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsAccess {
    /// Client addresses allowed (CIDRs). Empty: any address.
    pub allow: Vec<IpNet>,
    /// When set, scrapes must send `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// The audit log (`[audit]`): sign-ins, administrators' and hosts' actions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Entries older than this are deleted (checked hourly).
    pub retention: Dur,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            retention: Dur::secs(365 * 86400),
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            allowed_domains: Vec::new(),
            admin_emails: Vec::new(),
            code_ttl: Dur::secs(600),
            code_max_attempts: 5,
            codes_per_email_per_hour: 5,
            codes_per_ip_per_hour: 30,
            codes_per_email_per_hour_all_ips: 20,
            session_ttl: Dur::secs(30 * 86400),
            methods: vec![AuthMethod::EmailCode],
            recheck_every: Dur::secs(300),
            password_failures_per_login_per_ip: 5,
            password_failures_per_ip: 30,
            password_failures_per_login_all_ips: 20,
            password_failure_window: Dur::secs(900),
            oidc: Oidc::default(),
            ldap: Ldap::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Meetings {
    /// Whether people without an account may join by link (default for new meetings).
    pub guests_allowed: bool,
    pub max_invitees: usize,
    pub max_duration: Dur,
    /// Join tokens are short-lived: the client uses one right away to open signaling.
    pub join_token_ttl: Dur,
    /// TURN credentials handed out at join last this long.
    pub turn_credential_ttl: Dur,
    /// Join answers per signed-in person per minute (0: no limit).
    pub joins_per_user_per_minute: u32,
    /// Join answers to guests per client IP per minute (0: no limit). An office behind one
    /// NAT address is one client IP: raise it for large guest audiences.
    pub joins_per_ip_per_minute: u32,
    /// Default for new meetings: who waits in the lobby until a host lets them in.
    /// "off", "guests" (everyone neither invited nor a co-host), "everyone" (all but hosts).
    pub lobby: LobbyMode,
    /// Wrong meeting passcodes one client (a signed-in person, or a guest's IP) may try per
    /// meeting in `wrong_passcode_window`; after that every attempt is refused until the
    /// window is over.
    pub wrong_passcodes: u32,
    pub wrong_passcode_window: Dur,
    /// When no host (owner or co-host) is in a meeting, an invitee present may claim host
    /// powers (becoming a co-host).
    pub claim_host: bool,
}

/// Who waits in a meeting's lobby.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LobbyMode {
    Off,
    Guests,
    Everyone,
}

impl LobbyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LobbyMode::Off => "off",
            LobbyMode::Guests => "guests",
            LobbyMode::Everyone => "everyone",
        }
    }

    pub fn parse(s: &str) -> Option<LobbyMode> {
        match s {
            "off" => Some(LobbyMode::Off),
            "guests" => Some(LobbyMode::Guests),
            "everyone" => Some(LobbyMode::Everyone),
            _ => None,
        }
    }
}

impl Default for Meetings {
    fn default() -> Self {
        Meetings {
            guests_allowed: true,
            max_invitees: 200,
            max_duration: Dur::secs(24 * 3600),
            join_token_ttl: Dur::secs(300),
            turn_credential_ttl: Dur::secs(6 * 3600),
            joins_per_user_per_minute: 30,
            joins_per_ip_per_minute: 120,
            lobby: LobbyMode::Guests,
            wrong_passcodes: 5,
            wrong_passcode_window: Dur::secs(900),
            claim_host: true,
        }
    }
}

/// The allocator: the apiserver's side (`url`, `timeout`, `retry_after`) and the built-in
/// allocator's strategies and pools (in-process on a single box, or the standalone
/// `allocateserver` role, whose `allocate.toml` holds these same keys at its top level).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Allocator {
    /// An external allocator speaking the seed's protocol (`--allocateserver`). Absent: the
    /// built-in allocator answers in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How long the apiserver waits for the allocator.
    pub timeout: Dur,
    /// The `Retry-After` the client gets when no server is free.
    pub retry_after: Dur,
    /// Standalone allocateserver: the one endpoint's path. It is the secret that keeps others
    /// out, so it must be long and random (at least 16 characters).
    pub path: String,
    /// Standalone allocateserver: client addresses allowed to ask (`"10.0.0.0/24"`). Empty: any.
    pub allow: Vec<IpNet>,
    /// How often provisioning is driven and starting servers are checked.
    pub check_every: Dur,
    /// What one sfuserver costs per hour, for the report's comparison with an always-on pool
    /// (the seed quotes about $1/hour for a 16-vCPU server).
    pub cost_per_server_hour: f64,
    pub scheduled: AllocScheduled,
    pub instant: AllocInstant,
    /// Server pools of the built-in allocator. Empty: this box's own roles, plus the nodes
    /// that registered with the node registry (which are always added to a pool).
    pub sfu: Vec<PoolEntry>,
    pub turn: Vec<PoolEntry>,
    pub fs: Vec<PoolEntry>,
    pub provision: Provision,
}

impl Default for Allocator {
    fn default() -> Self {
        Allocator {
            url: None,
            timeout: Dur::secs(5),
            retry_after: Dur::secs(10),
            path: String::new(),
            allow: Vec::new(),
            check_every: Dur::secs(5),
            cost_per_server_hour: 1.0,
            scheduled: AllocScheduled::default(),
            instant: AllocInstant::default(),
            sfu: Vec::new(),
            turn: Vec::new(),
            fs: Vec::new(),
            provision: Provision::default(),
        }
    }
}

/// How scheduled meetings get their sfuserver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduledStrategy {
    /// Share the pool with other meetings, least loaded first (a single box).
    Shared,
    /// One pool sfuserver per meeting, reserved for [begin - lead, end + lag].
    Dedicated,
    /// A server created by `provision.create` at begin - lead, deleted at end + lag.
    OnDemand,
}

/// How instant meetings get their sfuserver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstantStrategy {
    /// Owners share pool sfuservers, up to `max_owners_per_sfu` each, least loaded first.
    Shared,
    /// One server per owner, created when asked and deleted after `idle`.
    OnDemand,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllocScheduled {
    pub strategy: ScheduledStrategy,
    /// Reserved (dedicated) or created (on_demand) this long before the meeting begins...
    pub lead: Dur,
    /// ... and kept this long after it ends.
    pub lag: Dur,
}

impl Default for AllocScheduled {
    fn default() -> Self {
        AllocScheduled {
            strategy: ScheduledStrategy::Shared,
            lead: Dur::secs(2 * 3600),
            lag: Dur::secs(2 * 3600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllocInstant {
    pub strategy: InstantStrategy,
    /// shared: owners per sfuserver. 0: no limit (a single box serves everyone).
    pub max_owners_per_sfu: u32,
    /// on_demand: a server nobody used for this long is deleted; shared: an owner's seat on a
    /// pool server is given up after this long.
    pub idle: Dur,
}

impl Default for AllocInstant {
    fn default() -> Self {
        AllocInstant {
            strategy: InstantStrategy::Shared,
            max_owners_per_sfu: 0,
            idle: Dur::secs(3 * 3600),
        }
    }
}

impl Allocator {
    /// The built-in allocator's settings; `standalone` adds the allocateserver role's own.
    fn validate(&self, standalone: bool) -> anyhow::Result<()> {
        use anyhow::bail;
        if standalone {
            let p = &self.path;
            if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
                bail!(
                    "allocateserver `path` {p:?} must be a URL path starting with / (no ? or #), e.g. \"/{}\"",
                    crate::ids::random_token(24)
                );
            }
            if p.len() < 16 {
                bail!(
                    "allocateserver `path` {p:?} is too short to be unguessable: use at least 16 characters, e.g. \"/{}\"",
                    crate::ids::random_token(24)
                );
            }
        }
        for (what, pool) in [("sfu", &self.sfu), ("turn", &self.turn), ("fs", &self.fs)] {
            for e in pool {
                split_host_port(&e.address).map_err(|err| {
                    anyhow::anyhow!("[[{what}]] address {:?}: {err}; write host:port", e.address)
                })?;
            }
        }
        let pv = &self.provision;
        let on_demand = self.scheduled.strategy == ScheduledStrategy::OnDemand
            || self.instant.strategy == InstantStrategy::OnDemand;
        if on_demand && (pv.create.trim().is_empty() || pv.delete.trim().is_empty()) {
            bail!(
                "an on_demand strategy needs `provision.create` and `provision.delete`, the commands that create and delete server {{name}}"
            );
        }
        if self.scheduled.strategy == ScheduledStrategy::OnDemand && pv.address.trim().is_empty() {
            bail!(
                "scheduled strategy on_demand needs `provision.address` (e.g. \"{{name}}.sfu.example.com:443\"): the apiserver learns a scheduled meeting's server when the meeting is made, before the server exists"
            );
        }
        if !pv.address.is_empty() {
            split_host_port(&pv.address.replace("{name}", "x")).map_err(|e| {
                anyhow::anyhow!("`provision.address` {:?}: {e}; write host:port", pv.address)
            })?;
        }
        let prefix_ok = !pv.name_prefix.is_empty()
            && pv.name_prefix.len() <= 30
            && pv.name_prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && pv
                .name_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !prefix_ok {
            bail!(
                "`provision.name_prefix` {:?}: use 1 to 30 lowercase letters, digits and dashes, starting with a letter",
                pv.name_prefix
            );
        }
        if pv.retry_initial.0.is_zero() || pv.retry_initial > pv.retry_max {
            bail!("`provision.retry_initial` must be above 0 and at most `provision.retry_max`");
        }
        if self.check_every.0 < std::time::Duration::from_millis(100) {
            bail!("`check_every` must be at least 100ms, e.g. \"5s\"");
        }
        if !self.cost_per_server_hour.is_finite() || self.cost_per_server_hour < 0.0 {
            bail!("`cost_per_server_hour` must be a price like 1.0");
        }
        Ok(())
    }
}

/// Which meetings a pool sfuserver takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serves {
    #[default]
    All,
    Scheduled,
    Instant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    /// `host:port` as handed to clients.
    pub address: String,
    /// What it should carry; 0: no limit stated. sfuserver: forwarded RTP packets per second
    /// for the whole box; turnserver: allocations. The node registry's figure wins when the
    /// node reports one.
    #[serde(default)]
    pub capacity: u32,
    /// sfuserver: which meetings it takes (`all`, `scheduled`, `instant`).
    #[serde(default)]
    pub serves: Serves,
}

impl PoolEntry {
    pub fn new(address: impl Into<String>) -> Self {
        PoolEntry {
            address: address.into(),
            capacity: 0,
            serves: Serves::All,
        }
    }
}

/// On-demand servers: the commands that create and delete them. `{name}` is replaced by a
/// stable server name (letters, digits and dashes), so re-running a command is harmless.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Provision {
    /// Creates server `{name}` (run with `sh -c`); prints its `host:port` on the last line
    /// of stdout unless `address` is set.
    pub create: String,
    /// Deletes server `{name}`; must succeed when it is already gone.
    pub delete: String,
    /// The address a server will have, e.g. `"{name}.sfu.example.com:443"`. Needed by
    /// scheduled on_demand: the apiserver learns the address when the meeting is scheduled,
    /// long before the server exists.
    pub address: String,
    /// Print (log) the commands instead of running them; servers count as created.
    pub dry_run: bool,
    /// A command still running after this long is killed and retried.
    pub timeout: Dur,
    /// A failed command is retried after `retry_initial`, doubling up to `retry_max`.
    pub retry_initial: Dur,
    pub retry_max: Dur,
    /// Server names start with this.
    pub name_prefix: String,
}

impl Default for Provision {
    fn default() -> Self {
        Provision {
            create: String::new(),
            delete: String::new(),
            address: String::new(),
            dry_run: false,
            timeout: Dur::secs(15 * 60),
            retry_initial: Dur::secs(30),
            retry_max: Dur::secs(30 * 60),
            name_prefix: "meeting-sfu".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sfu {
    /// The UDP port of the first media worker; worker i uses `udp_port + i`. 0: any free port.
    pub udp_port: u16,
    /// Media worker threads. 0: one per CPU core.
    pub workers: usize,
    /// A room stays open this long after the last participant left.
    pub room_grace: Dur,
    /// Addresses advertised to browsers as ICE candidates. Empty: the listen address's IP.
    pub ip: Vec<IpAddr>,
    /// Audio streams forwarded to each participant: the K loudest. 0: every stream.
    pub audio_top_k: usize,
    /// What this sfuserver tells the allocator it can carry, in forwarded RTP packets per
    /// second for the whole box. 0: `workers` × `sfuserver::PPS_PER_WORKER` (measured,
    /// docs/OPERATIONS.md "Size the sfuserver").
    pub capacity_pps: u32,
}

impl Default for Sfu {
    fn default() -> Self {
        Sfu {
            udp_port: 10000,
            workers: 0,
            room_grace: Dur::secs(60),
            ip: Vec::new(),
            audio_top_k: 3,
            capacity_pps: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Turn {
    /// TURN over UDP and TCP (the seed's `--port`). 0: any free port (tests).
    pub port: u16,
    /// Relay and advertised address (the seed's `--ip`). Absent: the listen address's IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// TURN over TLS (`turns:`), served when this process has a certificate. 0: any free port.
    pub tls_port: u16,
    /// The realm of TURN's long-term credentials; clients learn it from the server.
    pub realm: String,
    /// Relay sockets (one per allocation) take UDP ports from this range.
    pub relay_port_min: u16,
    pub relay_port_max: u16,
    /// Peers in loopback, private, link-local or multicast ranges that may be relayed to
    /// anyway. This deployment's own sfuservers are always allowed.
    pub allowed_peers: Vec<IpNet>,
    /// Allocations one username (one participant's credentials) may hold at once.
    pub max_allocations_per_user: u32,
    /// Allocations one source address (IPv6: one /64) may hold at once, whatever credentials
    /// it uses: the cap that keeps one client from taking every relay port.
    pub max_allocations_per_ip: u32,
    /// Allocations the credentials of one meeting may hold at once.
    pub max_allocations_per_meeting: u32,
    /// TURN-over-TCP and TLS connections one source address (IPv6: one /64) may have open.
    pub max_tcp_connections_per_ip: u32,
    /// Relayed kbit/s per allocation and direction. 0: unlimited.
    pub max_bandwidth_kbps: u32,
    /// The longest lifetime an allocation gets per refresh (at most 1h).
    pub max_lifetime: Dur,
    /// Requests without valid credentials answered per second and source address.
    pub unauthenticated_per_second: u32,
}

impl Default for Turn {
    fn default() -> Self {
        Turn {
            port: 3478,
            ip: None,
            tls_port: 5349,
            realm: "meeting-appliance".into(),
            relay_port_min: 49152,
            relay_port_max: 65535,
            allowed_peers: Vec::new(),
            max_allocations_per_user: 32,
            max_allocations_per_ip: 300,
            max_allocations_per_meeting: 1000,
            max_tcp_connections_per_ip: 300,
            max_bandwidth_kbps: 20_000,
            max_lifetime: Dur::secs(3600),
            unauthenticated_per_second: 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fs {
    /// Where note files are stored (the seed's `--directory`). Absent: `data_dir/files`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<PathBuf>,
    /// The largest single file, in bytes; enforced while the upload streams.
    pub max_file_size: u64,
    /// Bytes all files of one meeting may take together on one fsserver.
    pub meeting_quota: u64,
    /// Media types shown inline (in the page) when the bytes really are of that type;
    /// everything else is served as an attachment. Never add types that can run scripts
    /// (text/html, image/svg+xml).
    pub inline_types: Vec<String>,
    /// An upload URL from `POST /api/v1/meetings/{id}/files` works this long.
    pub upload_url_ttl: Dur,
    /// A download URL handed to the web client works this long.
    pub download_url_ttl: Dur,
    /// The file links in mailed notes work this long.
    pub mail_link_ttl: Dur,
    /// An upload the apiserver has not recorded (the client never committed it) is deleted
    /// this long after it was stored, and stops counting against the meeting's quota.
    pub unclaimed_ttl: Dur,
}

impl Default for Fs {
    fn default() -> Self {
        Fs {
            directory: None,
            max_file_size: 256 * 1024 * 1024,
            meeting_quota: 1024 * 1024 * 1024,
            inline_types: ["image/png", "image/jpeg", "image/gif", "image/webp"]
                .map(String::from)
                .to_vec(),
            upload_url_ttl: Dur::secs(15 * 60),
            download_url_ttl: Dur::secs(3600),
            mail_link_ttl: Dur::secs(30 * 86400),
            unclaimed_ttl: Dur::secs(3600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// ACME directory for automatic certificates (a DNS name and no --cert).
    pub acme_directory: String,
    /// Contact address given to the ACME CA (expiry warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme_email: Option<String>,
    /// PEM root that a private ACME server's own HTTPS chains to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme_ca_file: Option<PathBuf>,
    /// Port of the plain-HTTP listener for ACME challenges and redirects to HTTPS.
    pub http_port: u16,
    /// Renew an ACME certificate this long before it expires.
    pub renew_before: Dur,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            acme_directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            acme_email: None,
            acme_ca_file: None,
            http_port: 80,
            renew_before: Dur::secs(30 * 86400),
        }
    }
}

/// Meeting notes: their history and how fast one member may change them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notes {
    /// Bytes of history (saved versions of the text) one meeting keeps; older versions are
    /// thinned out (dense recent, sparse old) to stay under it.
    pub history_budget: u64,
    /// A version is kept when editing pauses this long (and when the last editor leaves).
    pub snapshot_after_pause: Dur,
    /// Saves through the REST API (`PUT`, restore) one member may make per minute and meeting…
    pub saves_per_minute: u32,
    /// …with this many at once.
    pub save_burst: u32,
    /// Changes one member may send per second over the live connection (a typist sends ~10).
    pub live_updates_per_second: u32,
    /// Bytes of changes one member may send per minute over the live connection.
    pub live_bytes_per_minute: u64,
}

impl Default for Notes {
    fn default() -> Self {
        Notes {
            history_budget: 16 * 1024 * 1024,
            snapshot_after_pause: Dur::secs(30),
            saves_per_minute: 20,
            save_burst: 10,
            live_updates_per_second: 30,
            live_bytes_per_minute: 8 * 1024 * 1024,
        }
    }
}

/// Reads the file (if any) and the environment over the defaults. Flags come on top, in cli.rs.
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Config> {
    let source = match file {
        Some(path) => {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            Some(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            )
        }
        None => None,
    };
    load_from(source, env)
}

/// The keys of `[allocator]` that an `allocate.toml` (the standalone allocateserver's file)
/// writes at its top level. `url` and `timeout` are the apiserver's side only.
const ALLOCATE_FILE_KEYS: [&str; 11] = [
    "path",
    "retry_after",
    "allow",
    "check_every",
    "cost_per_server_hour",
    "scheduled",
    "instant",
    "sfu",
    "turn",
    "fs",
    "provision",
];

/// Reads the standalone allocateserver's file (`allocate.toml`): the `[allocator]` keys at its
/// top level (`path`, `[scheduled]`, `[[sfu]]`, …) beside the process keys (`listen`, `cert`,
/// `cert_key`, `data_dir`, `[log]`, `[tls]`). A file that is clearly an appliance config (an
/// `[allocator]`, `[database]`, `[sfu]` table…) is read as one instead. Unknown keys are still
/// named.
pub fn load_allocate(file: &Path, env: &[(String, String)]) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("config file {}: {e}", file.display()))?;
    let mut top: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config file {}: {e}", file.display()))?;
    // An appliance config (e.g. for `allocateserver --report` on a single box) is read as one.
    let appliance = ["allocator", "roles", "database", "mail", "auth", "meetings"]
        .iter()
        .any(|k| top.contains_key(*k))
        || ["sfu", "turn", "fs"]
            .iter()
            .any(|k| top.get(*k).is_some_and(toml::Value::is_table));
    if appliance {
        return load(Some(file), env);
    }
    let mut alloc = toml::Table::new();
    for k in ALLOCATE_FILE_KEYS {
        if let Some(v) = top.remove(k) {
            alloc.insert(k.to_string(), v);
        }
    }
    top.insert("allocator".into(), toml::Value::Table(alloc));
    let rewritten = toml::to_string(&top)
        .map_err(|e| anyhow::anyhow!("config file {}: {e}", file.display()))?;
    load_from(
        Some(config::File::from_str(&rewritten, config::FileFormat::Toml)),
        env,
    )
    .map_err(|e| anyhow::anyhow!("{} ({}): {e}", file.display(), "allocate.toml format"))
}

fn load_from<S>(file: Option<S>, env: &[(String, String)]) -> anyhow::Result<Config>
where
    S: config::Source + Send + Sync + 'static,
{
    let mut b = config::Config::builder();
    if let Some(source) = file {
        b = b.add_source(source);
    }
    let env_map: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("MEETING_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    b = b.add_source(
        config::Environment::with_prefix("MEETING")
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("roles")
            .with_list_parse_key("auth.allowed_domains")
            .with_list_parse_key("auth.admin_emails")
            .with_list_parse_key("auth.methods")
            .with_list_parse_key("auth.oidc.scopes")
            .with_list_parse_key("auth.oidc.create_groups")
            .with_list_parse_key("auth.oidc.admin_groups")
            .with_list_parse_key("sfu.ip")
            .with_list_parse_key("turn.allowed_peers")
            .with_list_parse_key("fs.inline_types")
            .with_list_parse_key("metrics.allow")
            .with_list_parse_key("allocator.allow")
            .try_parsing(true)
            .source(Some(env_map)),
    );
    let raw = b
        .build()
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let cfg: Config = raw
        .try_deserialize()
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    Ok(cfg)
}

impl Config {
    /// Checks what serde cannot: cross-field rules and values that must parse. Messages say
    /// what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.roles.is_empty() {
            bail!(
                "`roles` is empty: list at least one of apiserver, sfuserver, turnserver, fsserver, allocateserver"
            );
        }
        self.listen_addr()?;
        if let Some(d) = &self.domain_address {
            split_host_port(d).map_err(|e| anyhow::anyhow!("`domain_address` {d:?}: {e}"))?;
        }
        if self.cert.is_some() != self.cert_key.is_some() {
            bail!("give both `cert` and `cert_key` (--cert and --certkey), or neither");
        }
        // The standalone allocateserver is asked by the apiserver; it registers nowhere.
        let alone_allocator = self.roles == [Role::Allocateserver];
        let remote_roles = !self.roles.contains(&Role::Apiserver) && !alone_allocator;
        if remote_roles && self.apiserver.is_none() {
            bail!(
                "roles {:?} run without the apiserver: set `apiserver` (--apiserver host:port) to the apiserver they register with",
                self.roles.iter().map(|r| r.name()).collect::<Vec<_>>()
            );
        }
        if remote_roles && self.secret.is_none() {
            bail!(
                "roles on their own host need the deployment secret (--secret) the apiserver uses"
            );
        }
        for (i, m) in self.mail.servers.iter().enumerate() {
            if m.host.trim().is_empty() {
                bail!("mail server #{} has an empty host", i + 1);
            }
            let from = m.from_address();
            if from.parse::<lettre::Address>().is_err() {
                bail!(
                    "mail server {}: sender {from:?} is not an email address (--mailFrom)",
                    m.host
                );
            }
        }
        let defaults = self
            .mail
            .servers
            .iter()
            .filter(|m| m.domains.is_empty())
            .count();
        if !self.mail.servers.is_empty() && defaults == 0 {
            tracing::warn!(
                "every mail server lists `domains`; mail to other domains goes to the first server"
            );
        }
        if let Some(url) = &self.allocator.url {
            let u = url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("--allocateserver {url:?} is not a URL: {e}"))?;
            if u.scheme() != "http" && u.scheme() != "https" {
                bail!("--allocateserver {url:?} must be an http:// or https:// URL");
            }
        }
        self.allocator.validate(alone_allocator)?;
        if self.auth.code_max_attempts == 0 {
            bail!("`auth.code_max_attempts` must be at least 1");
        }
        self.auth.validate()?;
        if self.audit.retention.0 < std::time::Duration::from_secs(86400) {
            bail!("`audit.retention` must be at least a day, e.g. \"365days\"");
        }
        let t = &self.turn;
        if t.relay_port_min == 0 || t.relay_port_min > t.relay_port_max {
            bail!(
                "`turn.relay_port_min`..`turn.relay_port_max` ({}..{}) is not a port range: use e.g. 49152 and 65535",
                t.relay_port_min,
                t.relay_port_max
            );
        }
        if t.realm.trim().is_empty() {
            bail!("`turn.realm` is empty: give any name, e.g. your domain");
        }
        for (key, v) in [
            ("max_allocations_per_user", t.max_allocations_per_user),
            ("max_allocations_per_ip", t.max_allocations_per_ip),
            ("max_allocations_per_meeting", t.max_allocations_per_meeting),
            ("max_tcp_connections_per_ip", t.max_tcp_connections_per_ip),
        ] {
            if v == 0 {
                bail!("`turn.{key}` must be at least 1");
            }
        }
        if self.fs.max_file_size == 0 || self.fs.meeting_quota == 0 {
            bail!(
                "`fs.max_file_size` and `fs.meeting_quota` must be above 0 (bytes, e.g. 268435456 for 256 MiB)"
            );
        }
        let n = &self.notes;
        if n.history_budget < 2 * 1024 * 1024 {
            bail!(
                "`notes.history_budget` is {} bytes: give at least 2097152 (2 MiB, two versions of the largest notes)",
                n.history_budget
            );
        }
        if n.saves_per_minute == 0 || n.save_burst == 0 || n.live_updates_per_second == 0 {
            bail!(
                "`notes.saves_per_minute`, `notes.save_burst` and `notes.live_updates_per_second` must be at least 1"
            );
        }
        if n.live_bytes_per_minute < 1024 * 1024 {
            bail!("`notes.live_bytes_per_minute` must be at least 1048576 (1 MiB)");
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.parse().map_err(|e| {
            anyhow::anyhow!(
                "`listen` {:?} is not an address like 0.0.0.0:443: {e}",
                self.listen
            )
        })
    }

    pub fn has_role(&self, r: Role) -> bool {
        self.roles.contains(&r)
    }

    /// The effective config as TOML with every secret masked (`check-config`).
    pub fn to_masked_toml(&self) -> String {
        let mut c = self.clone();
        let mask = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some("********".into());
            }
        };
        mask(&mut c.secret);
        mask(&mut c.database.mysql_password);
        if let Some(u) = &c.database.url
            && let Ok(mut parsed) = url::Url::parse(u)
            && parsed.password().is_some()
        {
            let _ = parsed.set_password(Some("********"));
            c.database.url = Some(parsed.to_string());
        }
        for m in &mut c.mail.servers {
            mask(&mut m.password);
        }
        mask(&mut c.auth.oidc.client_secret);
        mask(&mut c.auth.ldap.bind_password);
        mask(&mut c.metrics.token);
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Splits `host:port` (IPv6 in brackets). The port is required.
pub fn split_host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        anyhow::bail!("empty host");
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/appliance.toml");
        let text = std::fs::read_to_string(&path).expect("config/appliance.toml is in the repo");
        let parsed: Config = toml::from_str(&text).expect("the sample parses");
        assert_eq!(
            parsed,
            Config::default(),
            "config/appliance.toml drifted from the defaults"
        );
        // Every key the defaults have is written (and explained) in the sample, and no other.
        fn keys(v: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let path = format!("{prefix}{k}");
                    keys(v, &format!("{path}."), out);
                    out.insert(path);
                }
            }
        }
        let (mut a, mut b) = (Default::default(), Default::default());
        keys(&toml::from_str(&text).expect("toml"), "", &mut a);
        keys(
            &toml::Value::try_from(Config::default()).expect("serializable"),
            "",
            &mut b,
        );
        assert_eq!(a, b, "the sample and the defaults have different keys");
    }

    #[test]
    fn sample_allocate_file_loads_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/allocate.toml");
        let mut c = load_allocate(&path, &[]).expect("config/allocate.toml loads");
        c.roles = vec![Role::Allocateserver];
        c.validate().expect("and is valid");
        assert_eq!(c.allocator.scheduled.strategy, ScheduledStrategy::Dedicated);
        assert_eq!(c.allocator.sfu.len(), 3);
        assert_eq!(c.allocator.sfu[2].capacity, 120_000);
        assert_eq!(c.allocator.fs[0].address, "fs.example.com:443");
        assert_eq!(c.listen, "10.0.0.2:8090");
        assert!(c.allocator.allow[0].contains("10.0.0.7".parse().expect("ip")));
        // The appliance sample is recognised as such (`allocateserver --report` on one box).
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/appliance.toml");
        assert_eq!(load_allocate(&path, &[]).expect("loads"), Config::default());
    }

    #[test]
    fn allocate_file_mistakes_are_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("allocate.toml");
        let check = |text: &str| -> String {
            std::fs::write(&f, text).expect("write");
            let r = load_allocate(&f, &[]).and_then(|mut c| {
                c.roles = vec![Role::Allocateserver];
                c.validate().map(|()| c)
            });
            r.expect_err("a mistake").to_string()
        };
        let e = check("path = \"/0123456789abcdef\"\n[instant]\nmax_owner = 3\n");
        assert!(e.contains("max_owner"), "{e}");
        let e = check("path = \"/short\"\n");
        assert!(e.contains("too short"), "{e}");
        let e = check("path = \"/0123456789abcdef\"\n[scheduled]\nstrategy = \"on_demand\"\n");
        assert!(e.contains("provision.create"), "{e}");
        let e = check("path = \"/0123456789abcdef\"\n[[sfu]]\naddress = \"no-port\"\n");
        assert!(e.contains("no-port"), "{e}");
        let e = check("path = \"/0123456789abcdef\"\nallow = [\"10.0.0.0/40\"]\n");
        assert!(e.contains("prefix"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("a.toml");
        std::fs::write(&f, "[auth]\ncode_tl = \"5m\"\n").expect("write");
        let err = load(Some(&f), &[]).expect_err("typo must fail").to_string();
        assert!(err.contains("code_tl"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_unknown_env_key_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("a.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9000\"\n[auth]\ncode_ttl = \"5m\"\n",
        )
        .expect("write");
        let env = vec![("MEETING_AUTH__CODE_TTL".to_string(), "2m".to_string())];
        let c = load(Some(&f), &env).expect("loads");
        assert_eq!(c.auth.code_ttl, Dur::secs(120));
        assert_eq!(c.listen, "127.0.0.1:9000");
        let env = vec![("MEETING_AUTH__BOGUS".to_string(), "1".to_string())];
        let err = load(Some(&f), &env)
            .expect_err("unknown env key")
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn mysql_url_from_seed_flags_is_encoded() {
        let d = Database {
            mysql_address: Some("127.0.0.1:3306".into()),
            mysql_user: Some("root".into()),
            mysql_password: Some("p@ss/word".into()),
            mysql_database: Some("Meeting".into()),
            ..Database::default()
        };
        assert_eq!(
            d.effective_url(Path::new("/x")),
            "mysql://root:p%40ss%2Fword@127.0.0.1:3306/Meeting"
        );
    }
}
