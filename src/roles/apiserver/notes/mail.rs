//! `POST /api/v1/meetings/{id}/notes/send`: after a scheduled meeting ended, its owner mails
//! the notes to everyone invited (and a copy to themselves) in one click.
//!
//! The mail has the Markdown as its text part and the rendered HTML as its alternative. Raw
//! HTML in the notes is shown as text, never passed through; links keep only http(s) and
//! mailto targets (a `javascript:` link becomes `#`); links and images that reference the
//! meeting's files (`/api/v1/meetings/{id}/files/{file}`) become signed links to the bytes
//! that work without signing in for `fs.mail_link_ttl`, and every file is listed at the end.
//! Mails go through the outbox: durable once this answers.

use actix_web::{HttpResponse, http::StatusCode, web};
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};
use sea_orm::TransactionTrait;
use std::collections::{BTreeSet, HashMap};

use super::current;
use crate::db::entities::{file, meeting};
use crate::db::models;
use crate::error::ApiError;
use crate::proto::files::FileOp;
use crate::roles::apiserver::ApiState;
use crate::roles::apiserver::auth::AuthUser;
use crate::roles::apiserver::files::{file_path, meeting_files, signed_url};
use crate::roles::apiserver::mail::{Outgoing, enqueue};
use crate::util::now;

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where the rendered notes' links point.
struct Links<'a> {
    meeting: i64,
    public_url: &'a str,
    /// File id → signed URL of its bytes.
    files: &'a HashMap<String, String>,
}

impl Links<'_> {
    /// A file reference of this meeting → its signed URL (`None`: not a file reference).
    fn file(&self, url: &str) -> Option<String> {
        let path = url.strip_prefix(self.public_url).unwrap_or(url);
        let prefix = format!("/api/v1/meetings/{}/files/", self.meeting);
        let rest = path.strip_prefix(&prefix)?;
        let id = rest.split(['?', '#']).next().unwrap_or("");
        // A deleted or unknown file: a dead link rather than a link into the app.
        Some(self.files.get(id).cloned().unwrap_or_else(|| "#".into()))
    }

    /// What a link in the mail points at.
    fn target(&self, url: &str) -> String {
        if let Some(u) = self.file(url) {
            return u;
        }
        let lower = url.trim().to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("mailto:")
            || lower.starts_with('#')
        {
            url.to_string()
        } else if url.starts_with('/') && !url.starts_with("//") {
            format!("{}{url}", self.public_url)
        } else {
            "#".into()
        }
    }
}

/// The notes as HTML for mail (see the module doc for what is kept and what is rewritten).
fn render_html(markdown: &str, links: &Links<'_>) -> String {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, opts).map(|ev| match ev {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: CowStr::from(links.target(&dest_url)),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: CowStr::from(links.target(&dest_url)),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

/// The Markdown with file references replaced by their signed links (the text part).
fn render_text(markdown: &str, links: &Links<'_>) -> String {
    let mut text = markdown.to_string();
    for (id, url) in links.files {
        let path = file_path(links.meeting, id);
        text = text.replace(&format!("{}{path}", links.public_url), url);
        text = text.replace(&path, url);
    }
    text
}

/// `POST /api/v1/meetings/{id}/notes/send` → 202 `{recipients, version}`.
pub async fn send(
    st: web::Data<ApiState>,
    me: AuthUser,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let me = me.user;
    let m = models::meeting::by_id(&st.db, id.into_inner())
        .await?
        .ok_or_else(|| ApiError::not_found("No such meeting."))?;
    if m.owner_id != me.id {
        let invited = models::meeting::is_invited(&st.db, m.id, &me.email).await?;
        return Err(if invited {
            ApiError::forbidden("not_owner", "Only the meeting's owner can send its notes.")
        } else {
            ApiError::not_found("No such meeting.")
        });
    }
    if m.kind != meeting::Kind::Scheduled {
        return Err(ApiError::bad_request(
            "not_scheduled",
            "Notes are sent to the invitees of a scheduled meeting; an instant room has none.",
        ));
    }
    if m.status == meeting::Status::Cancelled {
        return Err(ApiError::new(
            StatusCode::GONE,
            "meeting_cancelled",
            "This meeting was cancelled.",
        ));
    }
    let t = now();
    if t < m.end_at {
        return Err(ApiError::conflict(
            "meeting_not_ended",
            format!(
                "The notes can be sent once the meeting has ended (in {} minutes).",
                (m.end_at - t).div_euclid(60) + 1
            ),
        ));
    }
    let notes = current(&st.clone().into_inner(), m.id).await?;
    if notes.text.trim().is_empty() {
        return Err(ApiError::conflict(
            "notes_empty",
            "The notes are empty; write them first.",
        ));
    }
    let files: Vec<file::Model> = meeting_files(&st, m.id).await?;
    let ttl = st.cfg.fs.mail_link_ttl.as_secs_i64();
    let signed: HashMap<String, String> = files
        .iter()
        .map(|f| (f.id.clone(), signed_url(&st, f, FileOp::Get, ttl)))
        .collect();
    let links = Links {
        meeting: m.id,
        public_url: &st.public_url,
        files: &signed,
    };
    let body_html = render_html(&notes.text, &links);
    let mut text = render_text(&notes.text, &links);
    let when = chrono::DateTime::<chrono::Utc>::from_timestamp(m.begin_at, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let mut files_html = String::new();
    if !files.is_empty() {
        text.push_str("\n\nFiles:\n");
        files_html.push_str("<h3>Files</h3><ul>");
        for f in &files {
            let url = signed.get(&f.id).cloned().unwrap_or_default();
            text.push_str(&format!("- {} ({} bytes): {url}\n", f.name, f.size));
            files_html.push_str(&format!(
                "<li><a href=\"{}\">{}</a> ({} bytes)</li>",
                esc(&url),
                esc(&f.name),
                f.size
            ));
        }
        files_html.push_str("</ul>");
    }
    // The chat, when the owner chose so: messages to everyone only (never private ones).
    if m.chat_in_notes {
        let lines = models::chat::to_everyone(&st.db, m.id).await?;
        if !lines.is_empty() {
            text.push_str("\n\nChat:\n");
            files_html.push_str("<h3>Chat</h3><ul>");
            for l in &lines {
                let at = chrono::DateTime::<chrono::Utc>::from_timestamp(l.at, 0)
                    .map(|d| d.format("%H:%M").to_string())
                    .unwrap_or_default();
                text.push_str(&format!("[{at}] {}: {}\n", l.from_name, l.text));
                files_html.push_str(&format!(
                    "<li><small>{}</small> <b>{}</b>: {}</li>",
                    esc(&at),
                    esc(&l.from_name),
                    esc(&l.text)
                ));
            }
            files_html.push_str("</ul>");
        }
    }
    let days = ttl / 86400;
    text.push_str(&format!(
        "\n--\nNotes of \"{}\" ({when}), version {}. File links work for {days} days.\n",
        m.title, notes.version
    ));
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\
         <h2>Notes: {title}</h2><p>{when}</p><hr>{body_html}{files_html}<hr>\
         <p style=\"color:#666\">Version {version}. File links work for {days} days.</p></body></html>",
        title = esc(&m.title),
        when = esc(&when),
        version = notes.version,
    );
    let mut recipients: BTreeSet<String> = models::meeting::invitees(&st.db, m.id)
        .await?
        .into_iter()
        .collect();
    if let Some(owner) = models::user::by_id(&st.db, m.owner_id).await? {
        recipients.insert(owner.email);
    }
    let txn = st.db.begin().await?;
    super::super::mail::check_quota(&txn, &st.cfg.mail, me.id, recipients.len()).await?;
    for to in &recipients {
        enqueue(
            &txn,
            &st.mailer,
            Outgoing {
                html: Some(html.clone()),
                ..Outgoing::by(
                    me.id,
                    to.clone(),
                    format!("Notes: {}", m.title),
                    text.clone(),
                )
            },
        )
        .await
        .map_err(ApiError::internal)?;
    }
    txn.commit().await?;
    st.kick_mail();
    tracing::info!(
        meeting = m.id,
        version = notes.version,
        recipients = recipients.len(),
        "notes mailed"
    );
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "recipients": recipients,
        "version": notes.version,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_links_are_rewritten() {
        let mut files = HashMap::new();
        files.insert(
            "fAAAAAAAAAAAAAAAAAAAAAA".to_string(),
            "https://fs.example/x?t=1".to_string(),
        );
        let links = Links {
            meeting: 7,
            public_url: "https://meet.example",
            files: &files,
        };
        let md = "# Minutes\n\n<script>alert(1)</script>\n\n\
                  ![d](/api/v1/meetings/7/files/fAAAAAAAAAAAAAAAAAAAAAA) \
                  [x](javascript:alert(1)) [m](/m/abc) [o](https://o.example/) \
                  [gone](https://meet.example/api/v1/meetings/7/files/fBBBBBBBBBBBBBBBBBBBBBB)";
        let h = render_html(md, &links);
        assert!(h.contains("<h1>Minutes</h1>"), "{h}");
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("&lt;script&gt;"), "{h}");
        assert!(h.contains("src=\"https://fs.example/x?t=1\""), "{h}");
        assert!(!h.contains("javascript:"), "{h}");
        assert!(h.contains("href=\"https://meet.example/m/abc\""), "{h}");
        assert!(h.contains("href=\"https://o.example/\""), "{h}");
        assert!(h.contains("<a href=\"#\">gone</a>"), "{h}");
        let t = render_text(md, &links);
        assert!(t.contains("![d](https://fs.example/x?t=1)"), "{t}");
    }
}
