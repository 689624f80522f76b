//! The seed's allocateserver protocol, client side: the apiserver's `--allocateserver URL`.
//!
//! `GET URL?Kind=SFUTURN&Email=<e>&BeginAt=<ts>&EndAt=<ts>` → `{"sfu":"host:port","turn":"host:port"}`
//! `GET URL?Kind=FS&Email=<e>` → `{"fs":"host:port"}`. Parameters are appended to whatever
//! query the URL already has, in exactly this order. Non-200 is "no capacity right now".

use actix::prelude::*;
use serde::de::DeserializeOwned;
use std::time::Duration;

use crate::proto::{
    AllocateFileServer, AllocateServers, AllocationError, FsAssignment, ServerAssignment,
};

pub struct HttpAllocator {
    client: reqwest::Client,
    url: url::Url,
}

impl HttpAllocator {
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let url =
            url::Url::parse(url).map_err(|e| anyhow::anyhow!("--allocateserver {url:?}: {e}"))?;
        crate::util::install_ring_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("allocator HTTP client: {e}"))?;
        Ok(HttpAllocator { client, url })
    }

    /// The request URL for a set of parameters, in order.
    pub fn request_url(&self, params: &[(&str, String)]) -> url::Url {
        let mut u = self.url.clone();
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        u
    }

    fn ask<T: DeserializeOwned + 'static>(
        &self,
        params: &[(&str, String)],
    ) -> impl std::future::Future<Output = Result<T, AllocationError>> + 'static {
        let url = self.request_url(params);
        let client = self.client.clone();
        async move {
            let shown = redact_query(&url);
            let resp = client
                .get(url)
                .send()
                .await
                .map_err(|e| AllocationError::Failed(format!("GET {shown}: {e}")))?;
            let status = resp.status();
            if status != reqwest::StatusCode::OK {
                return Err(AllocationError::NotReady(format!(
                    "GET {shown} answered {status}"
                )));
            }
            let body = resp.bytes().await.map_err(|e| {
                AllocationError::Failed(format!("GET {shown}: reading the answer: {e}"))
            })?;
            serde_json::from_slice(&body).map_err(|e| {
                AllocationError::Failed(format!(
                    "GET {shown}: the answer is not the expected JSON: {e}"
                ))
            })
        }
    }
}

/// The allocator URL for logs, without its (possibly secret) path and query.
fn redact_query(u: &url::Url) -> String {
    format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?"))
}

fn check_address(what: &str, a: &str) -> Result<(), AllocationError> {
    crate::config::split_host_port(a).map(|_| ()).map_err(|e| {
        AllocationError::Failed(format!("allocator gave {what} {a:?}, not host:port ({e})"))
    })
}

impl Actor for HttpAllocator {
    type Context = Context<Self>;
}

impl Handler<AllocateServers> for HttpAllocator {
    type Result = ResponseFuture<Result<ServerAssignment, AllocationError>>;
    fn handle(&mut self, m: AllocateServers, _: &mut Context<Self>) -> Self::Result {
        let fut = self.ask::<ServerAssignment>(&[
            ("Kind", "SFUTURN".into()),
            ("Email", m.email),
            ("BeginAt", m.begin_at.to_string()),
            ("EndAt", m.end_at.to_string()),
        ]);
        Box::pin(async move {
            let a = fut.await?;
            check_address("sfu", &a.sfu)?;
            check_address("turn", &a.turn)?;
            Ok(a)
        })
    }
}

impl Handler<AllocateFileServer> for HttpAllocator {
    type Result = ResponseFuture<Result<FsAssignment, AllocationError>>;
    fn handle(&mut self, m: AllocateFileServer, _: &mut Context<Self>) -> Self::Result {
        let fut = self.ask::<FsAssignment>(&[("Kind", "FS".into()), ("Email", m.email)]);
        Box::pin(async move {
            let a = fut.await?;
            check_address("fs", &a.fs)?;
            Ok(a)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_follow_an_existing_query_in_seed_order() {
        let c = HttpAllocator::new("http://10.0.0.2/path?token=x", Duration::from_secs(1))
            .expect("url");
        let u = c.request_url(&[
            ("Kind", "SFUTURN".into()),
            ("Email", "a@b.com".into()),
            ("BeginAt", "0".into()),
            ("EndAt", "0".into()),
        ]);
        assert_eq!(
            u.as_str(),
            "http://10.0.0.2/path?token=x&Kind=SFUTURN&Email=a%40b.com&BeginAt=0&EndAt=0"
        );
    }
}
