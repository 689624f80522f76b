//! Certificates from an ACME CA (Let's Encrypt, or a company's own) over HTTP-01.
//!
//! A small plain-HTTP listener (`tls.http_port`, 80 in production) answers the CA's
//! challenges and redirects everything else to HTTPS. The account key, the certificate
//! chain and its key are kept in `data_dir/acme/`; a stored certificate is reused until it
//! is within `tls.renew_before` of expiry (the issuer limits certificates per week: never
//! order while a valid one is kept). Failed orders are retried with jittered, doubling
//! back-off; a rate-limit answer waits at least an hour.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rand::Rng;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::{CertInfo, CertStore};

#[derive(Clone, Debug)]
pub struct AcmeSettings {
    pub domain: String,
    pub directory: String,
    pub email: Option<String>,
    /// Trust anchor for a private ACME server's own HTTPS (PEM).
    pub ca_file: Option<PathBuf>,
    pub renew_before: Duration,
    /// `data_dir/acme`.
    pub dir: PathBuf,
}

/// Tokens being answered: token → key authorization.
pub type Challenges = Arc<RwLock<HashMap<String, String>>>;

/// The plain-HTTP listener: ACME challenges, and a redirect to HTTPS for everything else.
pub fn challenge_server(
    listener: std::net::TcpListener,
    challenges: Challenges,
    https_port: u16,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new((challenges, https_port));
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/.well-known/acme-challenge/{token}", web::get().to(answer))
            .default_service(web::to(redirect))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

async fn answer(d: web::Data<(Challenges, u16)>, token: web::Path<String>) -> HttpResponse {
    let found = d.0.read().ok().and_then(|m| m.get(token.as_str()).cloned());
    match found {
        Some(k) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(k),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn redirect(req: HttpRequest, d: web::Data<(Challenges, u16)>) -> HttpResponse {
    let host = req
        .connection_info()
        .host()
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_else(|| req.connection_info().host().to_string());
    let port = if d.1 == 443 {
        String::new()
    } else {
        format!(":{}", d.1)
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    HttpResponse::MovedPermanently()
        .insert_header(("Location", format!("https://{host}{port}{path}")))
        .finish()
}

fn paths(s: &AcmeSettings) -> (PathBuf, PathBuf, PathBuf) {
    (
        s.dir.join("account.json"),
        s.dir.join("cert.pem"),
        s.dir.join("key.pem"),
    )
}

/// The stored certificate, if there is one that loads and covers the domain.
pub fn stored(s: &AcmeSettings) -> Option<(rustls::sign::CertifiedKey, CertInfo)> {
    let (_, cert, key) = paths(s);
    if !cert.exists() {
        return None;
    }
    match super::load_files(&cert, &key, Some(&s.domain)) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("stored ACME certificate unusable: {e:#}");
            None
        }
    }
}

fn due(info: &CertInfo, renew_before: Duration) -> bool {
    info.not_after
        .duration_since(SystemTime::now())
        .map(|left| left <= renew_before)
        .unwrap_or(true)
}

async fn account(s: &AcmeSettings) -> anyhow::Result<Account> {
    let (path, _, _) = paths(s);
    let builder = || match &s.ca_file {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(creds) = serde_json::from_str::<AccountCredentials>(&text)
    {
        match builder()?.from_credentials(creds).await {
            Ok(a) => return Ok(a),
            Err(e) => {
                tracing::warn!(error = %e, "stored ACME account not usable; creating a new one")
            }
        }
    }
    let contact = s.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (acct, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory.clone(),
            None,
        )
        .await?;
    super::write_private(&path, serde_json::to_string(&creds)?.as_bytes())?;
    tracing::info!(directory = %s.directory, "created an ACME account");
    Ok(acct)
}

/// One complete order: account, HTTP-01 challenge, finalize, download. Saves and returns
/// the new certificate.
pub async fn obtain(
    s: &AcmeSettings,
    challenges: &Challenges,
) -> anyhow::Result<(rustls::sign::CertifiedKey, CertInfo)> {
    std::fs::create_dir_all(&s.dir)?;
    let acct = account(s).await?;
    tracing::info!(domain = %s.domain, "ordering a certificate");
    let ids = [Identifier::Dns(s.domain.clone())];
    let mut order = acct.new_order(&NewOrder::new(&ids)).await?;
    let mut tokens = Vec::new();
    {
        let mut auths = order.authorizations();
        while let Some(a) = auths.next().await {
            let mut a = a?;
            match a.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => anyhow::bail!("the CA says the authorization is {other:?}"),
            }
            let mut ch = a
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| anyhow::anyhow!("the CA offers no http-01 challenge"))?;
            let token = ch.token.clone();
            let value = ch.key_authorization().as_str().to_string();
            if let Ok(mut m) = challenges.write() {
                m.insert(token.clone(), value);
            }
            tokens.push(token);
            ch.set_ready().await?;
        }
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(120));
    let status = order.poll_ready(&retry).await;
    if let Ok(mut m) = challenges.write() {
        for t in &tokens {
            m.remove(t);
        }
    }
    let status = status?;
    if status != OrderStatus::Ready {
        anyhow::bail!(
            "the order ended {status:?}: the CA could not reach http://{}/.well-known/acme-challenge/ on port 80 (check DNS and the firewall)",
            s.domain
        );
    }
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&retry).await?;
    let (_, cert_path, key_path) = paths(s);
    super::write_private(&key_path, key_pem.as_bytes())?;
    super::write_private(&cert_path, chain_pem.as_bytes())?;
    let r = super::load_files(&cert_path, &key_path, Some(&s.domain))?;
    tracing::info!(domain = %s.domain, sha256 = %r.1.sha256, "certificate obtained");
    Ok(r)
}

/// Keeps the certificate in `store` valid: obtains one now if none is stored (or it is due),
/// then checks twice a day.
pub fn spawn_manager(
    s: AcmeSettings,
    store: Arc<CertStore>,
    challenges: Challenges,
    mut have: Option<CertInfo>,
) {
    actix_rt::spawn(async move {
        let mut backoff = Duration::from_secs(30);
        loop {
            let needed = have.as_ref().is_none_or(|i| due(i, s.renew_before));
            if needed {
                match obtain(&s, &challenges).await {
                    Ok((ck, info)) => {
                        store.swap(ck);
                        have = Some(info);
                        backoff = Duration::from_secs(30);
                    }
                    Err(e) => {
                        let text = format!("{e:#}");
                        let floor = if text.contains("rateLimited") {
                            Duration::from_secs(3600)
                        } else {
                            Duration::ZERO
                        };
                        let jitter = Duration::from_millis(
                            rand::rng().random_range(0..=backoff.as_millis() as u64 / 2),
                        );
                        let wait = (backoff + jitter).max(floor);
                        tracing::error!(error = %text, retry_in_s = wait.as_secs(), "could not obtain a certificate");
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(Duration::from_secs(6 * 3600));
                        continue;
                    }
                }
            } else if let Some(i) = &have {
                tracing::info!(expires = ?i.not_after, "the certificate is valid; next check in 12 h");
            }
            tokio::time::sleep(Duration::from_secs(12 * 3600)).await;
        }
    });
}
