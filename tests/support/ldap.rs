//! A throwaway OpenLDAP server (Debian's `slapd`) for the sign-in tests: a temp dir with a
//! `slapd.conf` (mdb database, the core/cosine/inetOrgPerson/nis schemas), data loaded with
//! `slapadd` before start, plain LDAP (StartTLS offered) and LDAPS on loopback ports, a
//! certificate from a test CA, and the `stats` log kept so tests can count binds.

use super::tls::TestCa;
use super::{TiedChild, file_tail, free_port, port_open, require_tool, wait_until};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

pub const SUFFIX: &str = "dc=corp,dc=test";
pub const ROOT_DN: &str = "cn=admin,dc=corp,dc=test";
pub const ROOT_PW: &str = "root-secret";
pub const SERVICE_DN: &str = "cn=svc,ou=services,dc=corp,dc=test";
pub const SERVICE_PW: &str = "svc-secret";
pub const PEOPLE: &str = "ou=people,dc=corp,dc=test";

pub struct Slapd {
    child: TiedChild,
    dir: TempDir,
    /// ldap:// (StartTLS offered)
    pub port: u16,
    /// ldaps://
    pub tls_port: u16,
    /// The test CA that signed the server's certificate (PEM file).
    pub ca_file: PathBuf,
    log: PathBuf,
}

impl Slapd {
    /// Starts slapd with the base entries (the suffix, ou=people, ou=groups, the service
    /// account) plus `ldif`.
    pub fn start(ldif: &str) -> Slapd {
        let slapd = require_tool("slapd", "slapd");
        let slapadd = require_tool("slapadd", "slapd");
        require_tool("ldapmodify", "ldap-utils");
        let dir = tempfile::Builder::new()
            .prefix("slapd-")
            .tempdir()
            .expect("slapd temp dir");
        let d = dir.path();
        fs::create_dir_all(d.join("data")).expect("data dir");
        let ca = TestCa::new();
        let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"], 86400);
        let ca_file = d.join("ca.pem");
        fs::write(&ca_file, &ca.pem).expect("write CA");
        fs::write(d.join("server.pem"), cert).expect("write cert");
        fs::write(d.join("server.key"), key).expect("write key");
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {d}/data
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by dn.exact="{SERVICE_DN}" read by self read by * none
"#,
            d = d.display()
        );
        fs::write(d.join("slapd.conf"), conf).expect("write slapd.conf");
        let base = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Corp\ndc: corp\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
             dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: svc\nuserPassword: {SERVICE_PW}\n\n"
        );
        fs::write(d.join("data.ldif"), format!("{base}{ldif}")).expect("write ldif");
        let out = Command::new(&slapadd)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif"))
            .stdin(Stdio::null())
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = d.join("slapd.log");
        let mut last = String::new();
        for _ in 0..3 {
            let (port, tls_port) = (free_port(), free_port());
            let logf = fs::File::create(&log).expect("slapd log");
            let mut cmd = Command::new(&slapd);
            cmd.arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
                ))
                // Foreground, logging connections and operations (counted by the tests).
                .args(["-d", "stats"])
                .stdin(Stdio::null())
                .stdout(logf.try_clone().expect("log handle"))
                .stderr(logf);
            let mut child = TiedChild::spawn(cmd).expect("spawn slapd");
            let up = wait_until(Duration::from_secs(20), "slapd to listen", || {
                if child.try_wait().is_some() {
                    return Some(false);
                }
                (port_open(port) && port_open(tls_port)).then_some(true)
            });
            if up {
                return Slapd {
                    child,
                    dir,
                    port,
                    tls_port,
                    ca_file,
                    log,
                };
            }
            last = file_tail(&log, 30);
        }
        panic!("slapd did not start:\n{last}");
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Applies an LDIF change as the root DN (ldapmodify over ldap://).
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ldapmodify (ldap-utils)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write ldif");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(
            out.status.success(),
            "ldapmodify failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `stats` log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Simple binds slapd saw for `dn`: (attempts, failed with invalidCredentials).
    pub fn binds(&self, dn: &str) -> (usize, usize) {
        let log = self.log();
        let mut ops: HashMap<String, bool> = HashMap::new();
        let mut failed = 0;
        let needle = format!("BIND dn=\"{dn}\"");
        for line in log.lines() {
            let conn_op = || {
                let c = line.split_whitespace().find(|w| w.starts_with("conn="))?;
                let o = line.split_whitespace().find(|w| w.starts_with("op="))?;
                Some(format!("{c} {o}"))
            };
            if line.contains(&needle) && line.contains("method=128") {
                if let Some(k) = conn_op() {
                    ops.insert(k, true);
                }
            } else if line.contains("RESULT tag=97")
                && line.contains("err=49")
                && conn_op().is_some_and(|k| ops.contains_key(&k))
            {
                failed += 1;
            }
        }
        (ops.len(), failed)
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.child.kill();
    }
}

/// An inetOrgPerson under ou=people with a password (and, when given, a mail address).
pub fn person(uid: &str, name: &str, mail: Option<&str>, password: &str) -> String {
    let mail = mail.map(|m| format!("mail: {m}\n")).unwrap_or_default();
    format!(
        "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\nsn: {uid}\ndisplayName: {name}\n{mail}userPassword: {password}\n\n"
    )
}

/// A groupOfNames under ou=groups with these uids as members.
pub fn group(cn: &str, uids: &[&str]) -> String {
    let members: String = uids
        .iter()
        .map(|u| format!("member: uid={u},{PEOPLE}\n"))
        .collect();
    format!("dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n{members}\n")
}

pub fn dn_of(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

pub fn group_dn(cn: &str) -> String {
    format!("cn={cn},ou=groups,{SUFFIX}")
}
