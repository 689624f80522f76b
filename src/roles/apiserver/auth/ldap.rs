//! LDAP / Active Directory sign-in (`auth.methods` has `ldap`), with the `ldap3` crate.
//!
//! ```text
//! POST /api/v1/auth/ldap {username, password} → 200 {token, user} + session cookie
//!                                             → 401 invalid_credentials | 429 rate_limited
//!                                             → 403 account_disabled | no_email
//!                                             → 503 directory_unavailable
//! ```
//! 1. Connect (`ldaps://`, or `ldap://` upgraded with StartTLS; a private CA from
//!    `auth.ldap.ca_file`) and bind as the service account (or search anonymously).
//! 2. Search `user_base` with `user_filter`, `{login}` escaped (RFC 4515): exactly one entry,
//!    or the answer is "wrong username or password" (no hint which).
//! 3. Bind as that entry with the password. An empty password is refused before any of this:
//!    LDAP treats a bind with a DN and no password as anonymous and lets it "succeed".
//! 4. Bind as the service account again and test membership of `create_groups` and
//!    `admin_groups` (`group_filter` on each group's DN).
//!
//! Attempts are throttled ([`super::throttle`]) before step 1. The email address from
//! `email_attribute` is the person here; `allowed_domains` still decides who may create.
//! The lifecycle re-check repeats steps 1, 2 and 4 for the same login and DN.

use actix_web::{HttpRequest, HttpResponse, web};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

use super::seal::IdpTokens;
use super::throttle;
use super::{NewSession, client_ip, open_session, require_method, upsert_user};
use crate::config::{self, AuthMethod};
use crate::error::ApiError;
use crate::roles::apiserver::ApiState;
use crate::roles::apiserver::audit::{Entry, Outcome, action};
use crate::util::{normalize_email, now};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSignIn {
    pub username: String,
    pub password: String,
}

/// Someone the directory knows.
#[derive(Clone, Debug)]
pub struct Person {
    pub dn: String,
    /// From `email_attribute` (not yet checked to be an address).
    pub email: Option<String>,
    pub name: Option<String>,
    /// None when no `create_groups` are configured.
    pub can_create: Option<bool>,
    pub is_admin: Option<bool>,
}

/// Why a password sign-in did not work.
#[derive(Debug)]
pub enum Failure {
    /// No such user, several, or the wrong password: the person's mistake (counted).
    Invalid(String),
    /// The directory could not be asked (down, TLS, the service account): not counted.
    Unavailable(String),
}

pub struct Directory {
    cfg: config::Ldap,
    /// Set when `ca_file` is: trust exactly that CA. None: the system's roots (ldap3's own).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Directory {
    pub fn new(cfg: &config::Ldap) -> anyhow::Result<Directory> {
        let tls = match &cfg.ca_file {
            None => None,
            Some(path) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("`auth.ldap.ca_file` {}: {e}", path.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| {
                        anyhow::anyhow!("`auth.ldap.ca_file` {}: {e}", path.display())
                    })?;
                    roots.add(c).map_err(|e| {
                        anyhow::anyhow!("`auth.ldap.ca_file` {}: {e}", path.display())
                    })?;
                }
                if roots.is_empty() {
                    anyhow::bail!(
                        "`auth.ldap.ca_file` {} holds no PEM certificate",
                        path.display()
                    );
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| anyhow::anyhow!("TLS for LDAP: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(config))
            }
        };
        Ok(Directory {
            cfg: cfg.clone(),
            tls,
        })
    }

    fn timeout(&self) -> Duration {
        self.cfg.timeout.0
    }

    /// Runs one directory operation with the configured timeout.
    async fn op<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = ldap3::result::Result<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout(), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!("{what}: no answer within {:?}", self.timeout())),
        }
    }

    /// A connection (TLS as configured), bound as the service account.
    async fn connect(&self) -> Result<Ldap, String> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout())
            .set_starttls(self.cfg.starttls);
        if let Some(c) = &self.tls {
            settings = settings.set_config(c.clone());
        }
        let (conn, mut ldap) = self
            .op(
                &format!("connecting to {}", self.cfg.url),
                LdapConnAsync::with_settings(settings, &self.cfg.url),
            )
            .await?;
        ldap3::drive!(conn);
        self.service_bind(&mut ldap).await?;
        Ok(ldap)
    }

    async fn service_bind(&self, ldap: &mut Ldap) -> Result<(), String> {
        if self.cfg.bind_dn.is_empty() {
            return Ok(());
        }
        let pw = self.cfg.bind_password.clone().unwrap_or_default();
        let r = self
            .op(
                "binding as the service account",
                ldap.simple_bind(&self.cfg.bind_dn, &pw),
            )
            .await?;
        r.success()
            .map(|_| ())
            .map_err(|e| format!("binding as the service account {}: {e}", self.cfg.bind_dn))
    }

    /// The one entry for `login`; None when there is none or more than one.
    async fn find(&self, ldap: &mut Ldap, login: &str) -> Result<Option<SearchEntry>, String> {
        let filter = self.cfg.user_filter.replace("{login}", &ldap_escape(login));
        let attrs = [
            self.cfg.email_attribute.as_str(),
            self.cfg.name_attribute.as_str(),
            "cn",
        ];
        let r = self
            .op(
                "searching for the user",
                ldap.search(&self.cfg.user_base, Scope::Subtree, &filter, attrs.to_vec()),
            )
            .await?;
        let (entries, _) = r
            .success()
            .map_err(|e| format!("searching {}: {e}", self.cfg.user_base))?;
        let mut found: Vec<SearchEntry> = entries.into_iter().map(SearchEntry::construct).collect();
        if found.len() > 1 {
            tracing::warn!(
                login,
                n = found.len(),
                "LDAP: several entries match one login; refusing it (tighten auth.ldap.user_filter)"
            );
            return Ok(None);
        }
        Ok(found.pop())
    }

    /// Whether `dn` is in any of `groups` (None when there are no groups: no rule).
    async fn member_of(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        groups: &[String],
    ) -> Result<Option<bool>, String> {
        if groups.is_empty() {
            return Ok(None);
        }
        let filter = self.cfg.group_filter.replace("{dn}", &ldap_escape(dn));
        for g in groups {
            let r = self
                .op(
                    "checking group membership",
                    ldap.search(g, Scope::Base, &filter, vec!["1.1"]),
                )
                .await?;
            // 32 noSuchObject: the group is gone; nobody is in it.
            if r.1.rc == 32 {
                tracing::warn!(group = %g, "LDAP: the configured group does not exist");
                continue;
            }
            let (entries, _) = r.success().map_err(|e| format!("reading group {g}: {e}"))?;
            if !entries.is_empty() {
                return Ok(Some(true));
            }
        }
        Ok(Some(false))
    }

    fn person(&self, e: &SearchEntry) -> Person {
        let get = |name: &str| {
            e.attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first().cloned())
        };
        Person {
            dn: e.dn.clone(),
            email: get(&self.cfg.email_attribute),
            name: get(&self.cfg.name_attribute).or_else(|| get("cn")),
            can_create: None,
            is_admin: None,
        }
    }

    async fn rights(&self, ldap: &mut Ldap, p: &mut Person) -> Result<(), String> {
        p.can_create = self.member_of(ldap, &p.dn, &self.cfg.create_groups).await?;
        p.is_admin = self.member_of(ldap, &p.dn, &self.cfg.admin_groups).await?;
        Ok(())
    }

    /// Checks `login` and `password` (steps 1–4 of the module doc).
    pub async fn authenticate(&self, login: &str, password: &str) -> Result<Person, Failure> {
        if password.is_empty() {
            return Err(Failure::Invalid("empty password".into()));
        }
        let mut ldap = self.connect().await.map_err(Failure::Unavailable)?;
        let result = async {
            let Some(entry) = self
                .find(&mut ldap, login)
                .await
                .map_err(Failure::Unavailable)?
            else {
                return Err(Failure::Invalid("no such user".into()));
            };
            let mut p = self.person(&entry);
            let bind = self
                .op("binding as the user", ldap.simple_bind(&p.dn, password))
                .await
                .map_err(Failure::Unavailable)?;
            match bind.rc {
                0 => {}
                // invalidCredentials
                49 => return Err(Failure::Invalid(format!("wrong password for {}", p.dn))),
                // e.g. 53 unwillingToPerform (a locked account)
                rc => {
                    return Err(Failure::Invalid(format!(
                        "the directory refused the bind for {} (result {rc}: {})",
                        p.dn, bind.text
                    )));
                }
            }
            self.service_bind(&mut ldap)
                .await
                .map_err(Failure::Unavailable)?;
            self.rights(&mut ldap, &mut p)
                .await
                .map_err(Failure::Unavailable)?;
            Ok(p)
        }
        .await;
        let _ = ldap.unbind().await;
        result
    }

    /// The re-check: is `login` still found, as the same `dn`? Ok(None): no (disabled, removed
    /// or moved). Err: the directory could not be asked.
    pub async fn lookup(&self, login: &str, dn: &str) -> Result<Option<Person>, String> {
        let mut ldap = self.connect().await?;
        let result = async {
            let Some(entry) = self.find(&mut ldap, login).await? else {
                return Ok(None);
            };
            if !entry.dn.eq_ignore_ascii_case(dn) {
                return Ok(None);
            }
            let mut p = self.person(&entry);
            self.rights(&mut ldap, &mut p).await?;
            Ok(Some(p))
        }
        .await;
        let _ = ldap.unbind().await;
        result
    }
}

/// `POST /api/v1/auth/ldap {username, password}`.
pub async fn sign_in(
    st: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Json<PasswordSignIn>,
) -> Result<HttpResponse, ApiError> {
    require_method(&st, AuthMethod::Ldap)?;
    let Some(dir) = &st.sso.ldap else {
        return Err(ApiError::internal("auth.methods has ldap but no directory"));
    };
    let login = body.username.trim();
    if login.is_empty()
        || login.chars().count() > 254
        || login.chars().any(char::is_control)
        || body.password.len() > 1024
    {
        return Err(ApiError::bad_request(
            "invalid_credentials",
            "Give your username and password.",
        ));
    }
    let key = login.to_lowercase();
    let ip = client_ip(&req);
    let counted = |reason: &str| {
        st.metrics
            .sign_in_failures
            .get_or_create(&crate::metrics::Metrics::label("reason", reason))
            .inc();
    };
    let failed = |outcome: Outcome, detail: String| {
        Entry::new(action::SIGN_IN, outcome)
            .method(AuthMethod::Ldap)
            .ip(ip.clone())
            .actor(None, key.clone())
            .detail(detail)
    };
    let attempt = match throttle::begin(&st.db, &st.cfg.auth, &key, &ip).await? {
        Ok(id) => id,
        Err(t) => {
            counted("ldap_throttled");
            st.audit(failed(
                Outcome::Throttled,
                format!("too many wrong passwords for {}", t.whom),
            ))
            .await;
            return Err(ApiError::rate_limited(
                t.retry_after,
                format!("Too many wrong passwords for {}; try again later.", t.whom),
            ));
        }
    };
    let person = match dir.authenticate(login, &body.password).await {
        Ok(p) => p,
        Err(Failure::Invalid(why)) => {
            counted("ldap_invalid");
            throttle::finish(&st.db, attempt, throttle::Outcome::Failed).await?;
            st.audit(failed(Outcome::Failed, why)).await;
            return Err(ApiError::new(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Wrong username or password.",
            ));
        }
        Err(Failure::Unavailable(why)) => {
            counted("ldap_unavailable");
            throttle::forget(&st.db, attempt).await?;
            tracing::error!(error = %why, "LDAP sign-in: the directory could not be asked");
            st.audit(failed(
                Outcome::Failed,
                format!("directory unavailable: {why}"),
            ))
            .await;
            return Err(ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "directory_unavailable",
                "The company directory cannot be reached right now; try again shortly.",
            ));
        }
    };
    throttle::finish(&st.db, attempt, throttle::Outcome::Ok).await?;
    let Some(email) = person.email.as_deref().and_then(normalize_email) else {
        st.audit(failed(
            Outcome::Refused,
            format!("{} has no usable email address", person.dn),
        ))
        .await;
        return Err(ApiError::forbidden(
            "no_email",
            "Your directory account has no email address; ask your administrator.",
        ));
    };
    let user = upsert_user(&st, &email, person.name.as_deref(), now()).await?;
    let (token, cookie, view) = open_session(
        &st,
        user,
        &ip,
        NewSession {
            method: AuthMethod::Ldap,
            idp_subject: Some(person.dn.clone()),
            idp_tokens: Some(IdpTokens {
                login: Some(login.to_string()),
                ..Default::default()
            }),
            can_create: person.can_create,
            is_admin: person.is_admin,
        },
    )
    .await?;
    Ok(HttpResponse::Ok()
        .cookie(cookie)
        .json(serde_json::json!({ "token": token, "user": view })))
}
