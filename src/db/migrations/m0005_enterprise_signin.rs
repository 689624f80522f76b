//! Enterprise sign-in: how a session was made and what the identity provider said
//! at its last check; users an administrator or the provider disabled; OpenID Connect logins
//! in flight; password attempts (throttling); the audit log.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id(col: &'static str) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.big_integer().not_null().auto_increment().primary_key();
    c
}
fn big(col: &'static str) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.big_integer().not_null();
    c
}
fn big_null(col: &'static str) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.big_integer().null();
    c
}
fn s(col: &'static str, len: u32) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.string_len(len).not_null();
    c
}
fn s_null(col: &'static str, len: u32) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.string_len(len).null();
    c
}
fn bool_null(col: &'static str) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.boolean().null();
    c
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds only one at a time.
        let mut method = ColumnDef::new("method");
        method.string_len(16).not_null().default("email_code");
        let added: [(&str, ColumnDef); 9] = [
            // An administrator disabled the account (until enabled again).
            ("users", big_null("disabled_at")),
            // The identity provider stopped vouching for it (until the next sign-in there).
            ("users", big_null("idp_disabled_at")),
            ("sessions", method),
            // OIDC `sub` or LDAP DN of the session's identity.
            ("sessions", s_null("idp_subject", 512)),
            // The provider's tokens (refresh, ID token for logout), sealed with a key derived
            // from the deployment secret.
            ("sessions", {
                let mut c = ColumnDef::new("idp_tokens");
                c.text().null();
                c
            }),
            ("sessions", big_null("checked_at")),
            // What the provider's groups allow; NULL: no group rule (the config decides).
            ("sessions", bool_null("can_create")),
            ("sessions", bool_null("is_admin")),
            ("sessions", s_null("ip", 64)),
        ];
        for (table, col) in added {
            m.alter_table(Table::alter().table(table).add_column(col).to_owned())
                .await?;
        }
        let tables = [
            Table::create()
                .table("sso_logins")
                .col(id("id"))
                .col(s("state_hash", 64))
                .col(s("binding_hash", 64))
                .col(s("nonce", 128))
                .col(s("pkce_verifier", 128))
                .col(s("next", 512))
                .col(s("ip", 64))
                .col(big("created_at"))
                .col(big_null("consumed_at"))
                .to_owned(),
            Table::create()
                .table("password_attempts")
                .col(id("id"))
                .col(s("login", 254))
                .col(s("ip", 64))
                .col(big("created_at"))
                .col(s("outcome", 16))
                .to_owned(),
            Table::create()
                .table("audit_log")
                .col(id("id"))
                .col(big("at"))
                .col(s("action", 64))
                .col(s("result", 16))
                .col(s_null("method", 16))
                .col(s_null("ip", 64))
                .col(big_null("actor_id"))
                .col(s("actor", 254))
                .col(s("target", 254))
                .col(big_null("meeting_id"))
                .col(s("detail", 1000))
                .to_owned(),
        ];
        for t in tables {
            m.create_table(t).await?;
        }
        let indexes = [
            ("ix_sessions_user", "sessions", vec!["user_id"], false),
            (
                "ix_sessions_checked",
                "sessions",
                vec!["method", "checked_at"],
                false,
            ),
            (
                "ux_sso_logins_state",
                "sso_logins",
                vec!["state_hash"],
                true,
            ),
            (
                "ix_sso_logins_ip",
                "sso_logins",
                vec!["ip", "created_at"],
                false,
            ),
            (
                "ix_password_attempts_login",
                "password_attempts",
                vec!["login", "created_at"],
                false,
            ),
            (
                "ix_password_attempts_ip",
                "password_attempts",
                vec!["ip", "created_at"],
                false,
            ),
            ("ix_audit_at", "audit_log", vec!["at"], false),
            (
                "ix_participations_user",
                "participations",
                vec!["user_id", "left_at"],
                false,
            ),
        ];
        for (name, table, cols, unique) in indexes {
            let mut idx = Index::create();
            idx.name(name).table(table);
            for c in cols {
                idx.col(c);
            }
            if unique {
                idx.unique();
            }
            m.create_index(idx.to_owned()).await?;
        }
        Ok(())
    }
}
