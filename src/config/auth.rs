//! Checks of the `[auth]` section that serde cannot make: the chosen sign-in methods have what
//! they need, URLs and filters parse, limits are sensible. Messages name the key to change.

use super::{Auth, AuthMethod};
use anyhow::bail;
use std::time::Duration;

impl Auth {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.methods.is_empty() {
            bail!(
                "`auth.methods` is empty: list at least one of \"email_code\", \"oidc\", \"ldap\""
            );
        }
        for (i, m) in self.methods.iter().enumerate() {
            if self.methods[..i].contains(m) {
                bail!("`auth.methods` lists {:?} twice", m.name());
            }
        }
        if self.recheck_every.0 < Duration::from_secs(1) {
            bail!("`auth.recheck_every` must be at least 1s, e.g. \"5m\"");
        }
        if self.password_failure_window.0 < Duration::from_secs(1)
            || self.password_failure_window.0 > Duration::from_secs(86400)
        {
            bail!("`auth.password_failure_window` must be between 1s and a day, e.g. \"15m\"");
        }
        if self.password_failures_per_login_per_ip == 0
            || self.password_failures_per_ip == 0
            || self.password_failures_per_login_all_ips == 0
        {
            bail!("`auth.password_failures_*` limits must be at least 1");
        }
        if self.methods.contains(&AuthMethod::Oidc) {
            self.validate_oidc()?;
        }
        if self.methods.contains(&AuthMethod::Ldap) {
            self.validate_ldap()?;
        }
        Ok(())
    }

    fn validate_oidc(&self) -> anyhow::Result<()> {
        let o = &self.oidc;
        let u = url::Url::parse(o.discovery_url.trim()).map_err(|e| {
            anyhow::anyhow!(
                "`auth.oidc.discovery_url` {:?} is not a URL ({e}): give the provider's issuer, e.g. \"https://login.example.com/realms/corp\"",
                o.discovery_url
            )
        })?;
        if u.scheme() != "https" && u.scheme() != "http" {
            bail!("`auth.oidc.discovery_url` must be an https:// URL");
        }
        if o.client_id.trim().is_empty() {
            bail!(
                "`auth.oidc.client_id` is empty: register this appliance at the provider and give its client id"
            );
        }
        if o.client_secret.as_deref().is_none_or(|s| s.is_empty()) {
            bail!("`auth.oidc.client_secret` is missing: the appliance is a confidential client");
        }
        if !o.scopes.iter().any(|s| s == "openid") {
            bail!("`auth.oidc.scopes` must include \"openid\"");
        }
        if o.groups_claim.trim().is_empty() {
            bail!("`auth.oidc.groups_claim` is empty: e.g. \"groups\"");
        }
        if let Some(r) = &o.redirect_url {
            url::Url::parse(r)
                .map_err(|e| anyhow::anyhow!("`auth.oidc.redirect_url` {r:?} is not a URL: {e}"))?;
        }
        if let Some(f) = &o.ca_file
            && !f.is_file()
        {
            bail!("`auth.oidc.ca_file` {} does not exist", f.display());
        }
        Ok(())
    }

    fn validate_ldap(&self) -> anyhow::Result<()> {
        let l = &self.ldap;
        let u = url::Url::parse(l.url.trim()).map_err(|e| {
            anyhow::anyhow!(
                "`auth.ldap.url` {:?} is not a URL ({e}): e.g. \"ldaps://dc1.example.com:636\"",
                l.url
            )
        })?;
        match (u.scheme(), l.starttls) {
            ("ldaps", true) => bail!(
                "`auth.ldap.starttls` is for ldap:// URLs; an ldaps:// URL is TLS from the start"
            ),
            ("ldap" | "ldaps", _) => {}
            (other, _) => bail!("`auth.ldap.url` must be ldap:// or ldaps://, not {other}://"),
        }
        let host = u.host_str().unwrap_or("");
        if host.is_empty() {
            bail!("`auth.ldap.url` {:?} names no host", l.url);
        }
        // Passwords never cross a network in the clear; a directory on this host may be
        // reached without TLS (e.g. through a local proxy).
        let local = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if u.scheme() == "ldap" && !l.starttls && !local {
            bail!(
                "`auth.ldap.url` {:?} would send passwords in the clear: use ldaps://, or set `auth.ldap.starttls = true`",
                l.url
            );
        }

        if l.user_base.trim().is_empty() {
            bail!(
                "`auth.ldap.user_base` is empty: the DN users are searched under, e.g. \"ou=people,dc=example,dc=com\""
            );
        }
        if !l.user_filter.contains("{login}") || !l.user_filter.trim_start().starts_with('(') {
            bail!(
                "`auth.ldap.user_filter` {:?} must be an LDAP filter in parentheses that uses {{login}}",
                l.user_filter
            );
        }
        let groups = !(l.create_groups.is_empty() && l.admin_groups.is_empty());
        let filter_ok =
            l.group_filter.contains("{dn}") && l.group_filter.trim_start().starts_with('(');
        if groups && !filter_ok {
            bail!(
                "`auth.ldap.group_filter` {:?} must be an LDAP filter in parentheses that uses {{dn}}",
                l.group_filter
            );
        }
        if !l.bind_dn.is_empty() && l.bind_password.as_deref().is_none_or(str::is_empty) {
            bail!(
                "`auth.ldap.bind_password` is missing for the service account `auth.ldap.bind_dn`"
            );
        }
        if l.email_attribute.trim().is_empty() {
            bail!("`auth.ldap.email_attribute` is empty: e.g. \"mail\"");
        }
        if let Some(f) = &l.ca_file
            && !f.is_file()
        {
            bail!("`auth.ldap.ca_file` {} does not exist", f.display());
        }
        Ok(())
    }

    /// Whether `m` is offered.
    pub fn offers(&self, m: AuthMethod) -> bool {
        self.methods.contains(&m)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AuthMethod, Config};

    fn check(f: impl FnOnce(&mut Config)) -> String {
        let mut c = Config::default();
        f(&mut c);
        match c.validate() {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn oidc(c: &mut Config) {
        c.auth.methods = vec![AuthMethod::Oidc];
        c.auth.oidc.discovery_url = "https://login.example.com".into();
        c.auth.oidc.client_id = "meet".into();
        c.auth.oidc.client_secret = Some("s3cret".into());
    }

    fn ldap(c: &mut Config) {
        c.auth.methods = vec![AuthMethod::Ldap, AuthMethod::EmailCode];
        c.auth.ldap.url = "ldaps://dc1.example.com".into();
        c.auth.ldap.user_base = "ou=people,dc=example,dc=com".into();
    }

    #[test]
    fn complete_methods_validate() {
        assert_eq!(check(oidc), "");
        assert_eq!(check(ldap), "");
    }

    #[test]
    fn mistakes_name_the_key() {
        assert!(check(|c| c.auth.methods.clear()).contains("auth.methods"));
        let e = check(|c| c.auth.methods = vec![AuthMethod::Ldap, AuthMethod::Ldap]);
        assert!(e.contains("twice"), "{e}");
        let e = check(|c| {
            oidc(c);
            c.auth.oidc.client_id.clear();
        });
        assert!(e.contains("auth.oidc.client_id"), "{e}");
        let e = check(|c| {
            oidc(c);
            c.auth.oidc.client_secret = None;
        });
        assert!(e.contains("auth.oidc.client_secret"), "{e}");
        let e = check(|c| {
            oidc(c);
            c.auth.oidc.discovery_url = "login.example.com".into();
        });
        assert!(e.contains("auth.oidc.discovery_url"), "{e}");
        let e = check(|c| {
            oidc(c);
            c.auth.oidc.scopes = vec!["email".into()];
        });
        assert!(e.contains("openid"), "{e}");
        let e = check(|c| {
            ldap(c);
            c.auth.ldap.starttls = true;
        });
        assert!(e.contains("auth.ldap.starttls"), "{e}");
        let e = check(|c| {
            ldap(c);
            c.auth.ldap.url = "ldap://dc1.example.com".into();
        });
        assert!(e.contains("in the clear"), "{e}");
        assert_eq!(
            check(|c| {
                ldap(c);
                c.auth.ldap.url = "ldap://127.0.0.1:389".into();
            }),
            ""
        );
        let e = check(|c| {
            ldap(c);
            c.auth.ldap.url = "http://dc1".into();
        });
        assert!(e.contains("ldap:// or ldaps://"), "{e}");
        let e = check(|c| {
            ldap(c);
            c.auth.ldap.user_filter = "(uid=*)".into();
        });
        assert!(e.contains("{login}"), "{e}");
        let e = check(|c| {
            ldap(c);
            c.auth.ldap.bind_dn = "cn=svc,dc=example,dc=com".into();
        });
        assert!(e.contains("auth.ldap.bind_password"), "{e}");
        let e = check(|c| {
            ldap(c);
            c.auth.ldap.ca_file = Some("/nonexistent/ca.pem".into());
        });
        assert!(e.contains("auth.ldap.ca_file"), "{e}");
        let e = check(|c| c.audit.retention = crate::config::Dur::secs(60));
        assert!(e.contains("audit.retention"), "{e}");
    }

    #[test]
    fn env_forms_of_the_new_keys() {
        let env: Vec<(String, String)> = [
            ("MEETING_AUTH__METHODS", "oidc,ldap"),
            ("MEETING_AUTH__OIDC__CLIENT_ID", "meet"),
            ("MEETING_AUTH__OIDC__CREATE_GROUPS", "staff,managers"),
            (
                "MEETING_AUTH__LDAP__CREATE_GROUPS",
                "cn=a,ou=groups,dc=x;cn=b,ou=groups,dc=x",
            ),
            ("MEETING_AUTH__LDAP__ADMIN_GROUPS", "cn=admins,dc=x"),
            ("MEETING_AUTH__RECHECK_EVERY", "2m"),
            ("MEETING_AUDIT__RETENTION", "90days"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = crate::config::load(None, &env).expect("loads");
        assert_eq!(c.auth.methods, vec![AuthMethod::Oidc, AuthMethod::Ldap]);
        assert_eq!(c.auth.oidc.client_id, "meet");
        assert_eq!(c.auth.oidc.create_groups, vec!["staff", "managers"]);
        assert_eq!(
            c.auth.ldap.create_groups,
            vec!["cn=a,ou=groups,dc=x", "cn=b,ou=groups,dc=x"]
        );
        assert_eq!(c.auth.ldap.admin_groups, vec!["cn=admins,dc=x"]);
        assert_eq!(c.auth.recheck_every.as_secs(), 120);
        assert_eq!(c.audit.retention.as_secs(), 90 * 86400);
        let env = vec![("MEETING_AUTH__METHODS".to_string(), "sms".to_string())];
        let e = crate::config::load(None, &env)
            .expect_err("unknown method")
            .to_string();
        assert!(e.contains("sms"), "{e}");
    }

    #[test]
    fn secrets_are_masked() {
        let mut c = Config::default();
        oidc(&mut c);
        c.auth.ldap.bind_password = Some("hunter2".into());
        let t = c.to_masked_toml();
        assert!(!t.contains("s3cret") && !t.contains("hunter2"), "{t}");
        assert!(t.contains("client_secret = \"********\""), "{t}");
    }
}
