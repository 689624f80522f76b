//! iCalendar (RFC 5545) invitations: METHOD:REQUEST for invites and updates, METHOD:CANCEL
//! for cancellations, one stable UID per meeting and SEQUENCE raised on every change — what
//! Outlook, Google Calendar and Thunderbird need to update the same calendar entry.

use chrono::{DateTime, Utc};
use std::fmt::Write;

pub enum Method {
    Request,
    Cancel,
}

pub struct Invite<'a> {
    pub method: Method,
    pub uid: &'a str,
    pub sequence: i32,
    pub title: &'a str,
    pub begin_at: i64,
    pub end_at: i64,
    pub organizer_email: &'a str,
    pub organizer_name: &'a str,
    pub attendees: &'a [String],
    pub join_url: &'a str,
    pub now: i64,
}

fn utc(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// TEXT value escaping (RFC 5545 3.3.11).
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value (CN=…): quoted, with the characters a quoted value cannot hold removed.
fn param(s: &str) -> String {
    format!(
        "\"{}\"",
        s.chars()
            .filter(|c| !matches!(c, '"' | '\r' | '\n'))
            .collect::<String>()
    )
}

/// Writes one content line folded at 75 octets (never inside a UTF-8 sequence), CRLF-ended.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

impl Invite<'_> {
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        line(&mut o, "BEGIN:VCALENDAR");
        line(&mut o, "VERSION:2.0");
        line(&mut o, "PRODID:-//meeting-appliance//Meetings//EN");
        line(&mut o, "CALSCALE:GREGORIAN");
        line(&mut o, &format!("METHOD:{}", self.method_name()));
        line(&mut o, "BEGIN:VEVENT");
        line(&mut o, &format!("UID:{}", text(self.uid)));
        line(&mut o, &format!("DTSTAMP:{}", utc(self.now)));
        line(&mut o, &format!("DTSTART:{}", utc(self.begin_at)));
        line(&mut o, &format!("DTEND:{}", utc(self.end_at)));
        line(&mut o, &format!("SEQUENCE:{}", self.sequence));
        line(&mut o, &format!("SUMMARY:{}", text(self.title)));
        line(&mut o, &format!("LOCATION:{}", text(self.join_url)));
        line(&mut o, &format!("URL:{}", self.join_url));
        line(
            &mut o,
            &format!(
                "DESCRIPTION:{}",
                text(&format!("Join the meeting: {}", self.join_url))
            ),
        );
        line(
            &mut o,
            &format!(
                "ORGANIZER;CN={}:mailto:{}",
                param(self.organizer_name),
                self.organizer_email
            ),
        );
        for a in self.attendees {
            let mut l = String::new();
            let _ = write!(
                l,
                "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN={}:mailto:{a}",
                param(a)
            );
            line(&mut o, &l);
        }
        line(
            &mut o,
            match self.method {
                Method::Request => "STATUS:CONFIRMED",
                Method::Cancel => "STATUS:CANCELLED",
            },
        );
        line(&mut o, "TRANSP:OPAQUE");
        line(&mut o, "END:VEVENT");
        line(&mut o, "END:VCALENDAR");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_long_lines_and_escapes_text() {
        let attendees = vec!["b@example.com".to_string()];
        let inv = Invite {
            method: Method::Request,
            uid: "u1@x",
            sequence: 2,
            title: "Plan; budget, Q3 — 计划 and a very long title that certainly needs folding at 75 octets",
            begin_at: 1_900_000_000,
            end_at: 1_900_003_600,
            organizer_email: "a@example.com",
            organizer_name: "Ann",
            attendees: &attendees,
            join_url: "http://x/m/abc",
            now: 1_800_000_000,
        };
        let s = inv.render();
        assert!(
            s.lines().all(|l| l.trim_end_matches('\r').len() <= 75),
            "{s}"
        );
        assert!(s.contains("SUMMARY:Plan\\; budget\\, Q3"));
        assert!(s.contains("DTSTART:20300317T174640Z"));
        let unfolded = s.replace("\r\n ", "");
        assert!(unfolded.contains("certainly needs folding at 75 octets"));
        let cal: icalendar::Calendar = s.parse().expect("icalendar parses our output");
        assert_eq!(cal.components.len(), 1);
    }
}
