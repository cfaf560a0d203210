//! The certificate store, in certbot's layout, so nginx and certbot's own tools keep working.
//!
//! ```text
//! <cert_dir>/archive/<name>/{cert,chain,fullchain,privkey}N.pem   every version, never rewritten
//! <cert_dir>/live/<name>/{cert,chain,fullchain,privkey}.pem       relative symlinks to version N
//! <cert_dir>/renewal/<name>.conf                                  certbot's renewal configuration
//! <cert_dir>/masstockctl/<name>.json                              our last renewal error
//! ```
//!
//! Storage is certbot's, so nginx's paths, certbot's tools and the reference's
//! `/etc/letsencrypt/live/masstock.fr/` keep working.
//!
//! - **Writing a version.** `write_version` writes `archive/<name>/<kind>N.pem` (N = highest in the
//!   archive + 1, even after a rollback; each file created exclusively and fsynced, the key 0600),
//!   then `renewal/<name>.conf`, then switches each `live/<name>/<kind>.pem` symlink to
//!   `../../archive/<name>/<kind>N.pem` (relative, as certbot's) by creating it at a temporary name
//!   and renaming it over the old one: readers see the old file or the new one, never none. The key
//!   switches first and `fullchain` last. `switch_to` points the links at an older N for rollback.
//!   Folders are created 0700 as certbot does.
//! - **Who renews a lineage.** Our `renewal/<name>.conf` is certbot's configobj format (top-level
//!   paths, `[renewalparams]` with `authenticator = webroot`, `server`, `key_type`,
//!   `[[webroot_map]]`) plus a first line `# managed by masstockctl` and the key
//!   `masstockctl_managed = True`. A conf without that key is certbot's: `status` says `certbot`.
//!   Writing a new version over a certbot lineage takes it over: certbot's conf is kept as
//!   `<name>.conf.certbot` (its `*.conf` glob skips it) and ours replaces it. Ours carries
//!   `autorenew = False`, so a certbot timer still installed skips the lineage instead of renewing
//!   it too; `disable_autorenew` does the same to a certbot conf in place. A lineage with no conf
//!   (made by hand) counts as ours: nothing else renews it.
//! - **The last renewal error** lives in `<cert_dir>/masstockctl/<name>.json` (message and time,
//!   0600), not in the renewal conf: a failed renewal of a certbot lineage must not rewrite
//!   certbot's file. `record_error(None)` removes it after a success.
//!
//! The store never writes outside `cert_dir`, and every error names the path it is about.

// Every I/O error here is a `StoreError` that names the action and the path (`io`); fs_err's
// would name the path a second time.
#![allow(clippy::disallowed_methods)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use instant_acme::CertificateIdentifier;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// The four files of a version, in the order the live symlinks are switched. `privkey` and `cert`
/// go first so that a reader that follows `fullchain` and `privkey` never pairs a new key with an
/// old certificate for longer than two renames.
pub const KINDS: [&str; 4] = ["privkey", "cert", "chain", "fullchain"];

/// The top-level key of `renewal/<name>.conf` that says masstockctl manages the lineage.
pub const MARKER_KEY: &str = "masstockctl_managed";

/// The first line of the renewal configuration we write.
pub const MARKER_COMMENT: &str = "# managed by masstockctl";

/// The certbot version our renewal configuration declares: its format is that of certbot 2.x
/// (Debian bookworm ships 2.1.0), and certbot warns about files written by a newer version.
const CERTBOT_FORMAT_VERSION: &str = "2.1.0";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to {action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid certificate: {0}")]
    Certificate(String),
    #[error("`{path}`: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("invalid lineage name `{0}`: it must be a single path segment, not `.` or `..`")]
    Name(String),
    #[error("`{path}` has no version {version} of every file (`{missing}` is missing)")]
    MissingVersion { path: PathBuf, version: u32, missing: String },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { action, path, source }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DNS names of the subject alternative names (the subject's CN when there are none).
    pub names: Vec<String>,
    /// Hexadecimal, lower case, without colons or leading zeros.
    pub serial: String,
    /// The issuer's distinguished name, as `C=US, O=Let's Encrypt, CN=E5`.
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Its ACME renewal information id (RFC 9773 §4.1, instant-acme's own), `None` when it has
    /// no authority key identifier to build one from.
    pub ari_id: Option<CertificateIdentifier<'static>>,
}

/// Parses the first certificate of a PEM text (other blocks, such as a key, are skipped).
pub fn parse_certificate(pem: &str) -> Result<CertInfo, StoreError> {
    let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|block| block.label == "CERTIFICATE")
        .ok_or_else(|| StoreError::Certificate("no `-----BEGIN CERTIFICATE-----` block".into()))?;
    let certificate = block.parse_x509().map_err(|error| StoreError::Certificate(error.to_string()))?;
    let mut names = Vec::new();
    for extension in certificate.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = extension.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::DNSName(name) = name {
                    names.push((*name).to_owned());
                }
            }
        }
    }
    if names.is_empty() {
        names.extend(certificate.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_owned));
    }
    let time = |time: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(time.timestamp(), 0)
            .ok_or_else(|| StoreError::Certificate(format!("validity time `{time}` is out of range")))
    };
    Ok(CertInfo {
        names,
        serial: certificate.tbs_certificate.serial.to_str_radix(16),
        issuer: certificate.issuer().to_string(),
        not_before: time(certificate.validity().not_before)?,
        not_after: time(certificate.validity().not_after)?,
        ari_id: CertificateIdentifier::try_from(&CertificateDer::from(block.contents.as_slice()))
            .ok()
            .map(CertificateIdentifier::into_owned),
    })
}

/// Who renews a lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// Our renewal configuration (or none at all: nothing else renews it).
    Masstockctl,
    /// A renewal configuration without our marker key: certbot made it.
    Certbot,
}

impl Manager {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Masstockctl => "masstockctl",
            Self::Certbot => "certbot",
        }
    }
}

/// One certificate's lineage, as `live/<name>/` shows it now.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub name: String,
    /// The archive version the live `cert.pem` points at; 0 when it is not a numbered archive link.
    pub version: u32,
    pub live_dir: PathBuf,
    pub cert: CertInfo,
    pub manager: Manager,
    /// The last renewal's error, `None` once a renewal succeeded.
    pub last_error: Option<String>,
    /// When that error happened.
    pub last_error_at: Option<DateTime<Utc>>,
}

/// The files of a new version.
#[derive(Debug, Clone, Copy)]
pub struct NewVersion<'a> {
    pub privkey_pem: &'a str,
    pub cert_pem: &'a str,
    pub chain_pem: &'a str,
    pub fullchain_pem: &'a str,
}

/// What our certbot-compatible `renewal/<name>.conf` says.
#[derive(Debug, Clone)]
pub struct RenewalConf {
    /// The ACME directory URL.
    pub server: String,
    pub webroot: PathBuf,
    pub names: Vec<String>,
    /// certbot's `key_type`: `ecdsa` or `rsa`.
    pub key_type: String,
}

/// The names of the lineages under `live/` (certbot's `README` skipped), sorted.
pub fn lineage_names(cert_dir: &Path) -> Result<Vec<String>, StoreError> {
    let live = cert_dir.join("live");
    let entries = match std::fs::read_dir(&live) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io("read", &live)(error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("read", &live))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "README" || name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// Every lineage under `live/`.
pub fn lineages(cert_dir: &Path) -> Result<Vec<Lineage>, StoreError> {
    lineage_names(cert_dir)?.iter().filter_map(|name| read_lineage(cert_dir, name).transpose()).collect()
}

/// The lineage `name`, or `None` when `live/<name>/` does not exist.
pub fn read_lineage(cert_dir: &Path, name: &str) -> Result<Option<Lineage>, StoreError> {
    check_name(name)?;
    let live_dir = cert_dir.join("live").join(name);
    if !live_dir.is_dir() {
        return Ok(None);
    }
    // `cert.pem` is the leaf alone; a hand-made lineage may only have `fullchain.pem`.
    let cert_path =
        ["cert.pem", "fullchain.pem"].iter().map(|file| live_dir.join(file)).find(|path| path.exists()).ok_or_else(
            || StoreError::Invalid {
                path: live_dir.clone(),
                message: "neither `cert.pem` nor `fullchain.pem` is there (or the link is broken)".into(),
            },
        )?;
    let pem = std::fs::read_to_string(&cert_path).map_err(io("read", &cert_path))?;
    let cert = parse_certificate(&pem)
        .map_err(|error| StoreError::Invalid { path: cert_path.clone(), message: error.to_string() })?;
    let version = std::fs::read_link(&cert_path)
        .ok()
        .and_then(|target| target.file_name().and_then(|file| version_of(&file.to_string_lossy(), "cert")))
        .unwrap_or(0);
    let manager = match read_renewal_conf(cert_dir, name)? {
        Some(text) if !is_ours(&text) => Manager::Certbot,
        _ => Manager::Masstockctl,
    };
    let state = read_state(cert_dir, name)?;
    Ok(Some(Lineage {
        name: name.to_owned(),
        version,
        live_dir,
        cert,
        manager,
        last_error: state.as_ref().map(|state| state.message.clone()),
        last_error_at: state.map(|state| state.at),
    }))
}

/// Stores a new version of `name`: the archive files first (each synced, the key 0600), then our
/// renewal configuration, then each live symlink switched atomically (a new link at a temporary
/// name, renamed over the old one). Returns the version number: one more than any in the archive.
pub fn write_version(
    cert_dir: &Path,
    name: &str,
    new: &NewVersion,
    renewal_conf: &RenewalConf,
) -> Result<u32, StoreError> {
    check_name(name)?;
    let archive = cert_dir.join("archive").join(name);
    let live = cert_dir.join("live").join(name);
    let renewal = cert_dir.join("renewal");
    for dir in [&archive, &live, &renewal] {
        create_private_dir(dir)?;
    }
    let version = archive_versions(&archive)?.into_iter().max().unwrap_or(0) + 1;
    for (kind, contents) in [
        ("privkey", new.privkey_pem),
        ("cert", new.cert_pem),
        ("chain", new.chain_pem),
        ("fullchain", new.fullchain_pem),
    ] {
        let path = archive.join(format!("{kind}{version}.pem"));
        let mode = if kind == "privkey" { 0o600 } else { 0o644 };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io("create", &path))?;
        file.write_all(contents.as_bytes()).map_err(io("write", &path))?;
        file.sync_all().map_err(io("sync", &path))?;
    }
    sync_dir(&archive)?;
    write_renewal_conf(cert_dir, name, renewal_conf)?;
    let readme = live.join("README");
    if !readme.exists() {
        crate::atomic::write_file(&readme, LIVE_README.as_bytes(), 0o644).map_err(io("write", &readme))?;
    }
    link_version(cert_dir, name, version)?;
    Ok(version)
}

/// Points the live symlinks of `name` back (or forward) at `version`, atomically each.
pub fn switch_to(cert_dir: &Path, name: &str, version: u32) -> Result<(), StoreError> {
    check_name(name)?;
    link_version(cert_dir, name, version)
}

/// Records the last renewal error of `name` with the time, for `certs status`; `None` clears it.
pub fn record_error(cert_dir: &Path, name: &str, error: Option<&str>) -> Result<(), StoreError> {
    check_name(name)?;
    let dir = cert_dir.join("masstockctl");
    let path = dir.join(format!("{name}.json"));
    match error {
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io("remove", &path)(error)),
        },
        Some(message) => {
            create_private_dir(&dir)?;
            let state = serde_json::json!({ "last_error": message, "at": Utc::now().to_rfc3339() });
            let text = format!("{state:#}\n");
            crate::atomic::write_file(&path, text.as_bytes(), 0o600).map_err(io("write", &path))
        }
    }
}

/// The archive versions of `name` that have all four files, sorted.
pub fn versions(cert_dir: &Path, name: &str) -> Result<Vec<u32>, StoreError> {
    check_name(name)?;
    let archive = cert_dir.join("archive").join(name);
    let mut complete: Vec<u32> = archive_versions(&archive)?
        .into_iter()
        .filter(|version| KINDS.iter().all(|kind| archive.join(format!("{kind}{version}.pem")).exists()))
        .collect();
    complete.sort_unstable();
    complete.dedup();
    Ok(complete)
}

/// The text of `renewal/<name>.conf`, when there is one.
pub fn read_renewal_conf(cert_dir: &Path, name: &str) -> Result<Option<String>, StoreError> {
    let path = renewal_conf_path(cert_dir, name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io("read", &path)(error)),
    }
}

/// `renewal/<name>.conf`.
#[must_use]
pub fn renewal_conf_path(cert_dir: &Path, name: &str) -> PathBuf {
    cert_dir.join("renewal").join(format!("{name}.conf"))
}

/// Our certbot-compatible renewal configuration for `name` (certbot's configobj format).
#[must_use]
pub fn render_renewal_conf(cert_dir: &Path, name: &str, conf: &RenewalConf) -> String {
    let cert_dir = crate::config::absolute(cert_dir);
    let live = cert_dir.join("live").join(name);
    let webroot = configobj_value(&conf.webroot.display().to_string());
    let mut text = format!(
        "{MARKER_COMMENT}: `masstockctl certs renew` renews this certificate. `autorenew = False`\n\
         # keeps certbot's own timer away from it; certbot can still read the lineage.\n\
         {MARKER_KEY} = True\n\
         version = {CERTBOT_FORMAT_VERSION}\n\
         archive_dir = {archive}\n\
         cert = {cert}\n\
         privkey = {privkey}\n\
         chain = {chain}\n\
         fullchain = {fullchain}\n\
         \n\
         # Options used in the renewal process\n\
         [renewalparams]\n\
         authenticator = webroot\n\
         webroot_path = {webroot},\n\
         server = {server}\n\
         key_type = {key_type}\n",
        archive = configobj_value(&cert_dir.join("archive").join(name).display().to_string()),
        cert = configobj_value(&live.join("cert.pem").display().to_string()),
        privkey = configobj_value(&live.join("privkey.pem").display().to_string()),
        chain = configobj_value(&live.join("chain.pem").display().to_string()),
        fullchain = configobj_value(&live.join("fullchain.pem").display().to_string()),
        server = configobj_value(&conf.server),
        key_type = configobj_value(&conf.key_type),
    );
    if conf.key_type == "ecdsa" {
        text.push_str("elliptic_curve = secp256r1\n");
    }
    text.push_str("autorenew = False\n[[webroot_map]]\n");
    for domain in &conf.names {
        let _ = writeln!(text, "{} = {webroot}", configobj_value(domain));
    }
    text
}

/// Whether a renewal configuration is ours: it has our marker key at the top level.
#[must_use]
pub fn is_ours(renewal_conf: &str) -> bool {
    renewal_conf
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .any(|(key, value)| key.trim() == MARKER_KEY && value.trim().eq_ignore_ascii_case("true"))
}

/// Sets `autorenew = False` under `[renewalparams]` of a certbot renewal configuration, replacing
/// an `autorenew` line already there, so certbot's timer skips the lineage. Every other line is
/// kept as it is.
#[must_use]
pub fn disable_autorenew(renewal_conf: &str) -> String {
    let mut lines: Vec<&str> = renewal_conf.lines().collect();
    let Some(start) = lines.iter().position(|line| line.trim() == "[renewalparams]") else {
        let mut text = renewal_conf.trim_end().to_owned();
        text.push_str("\n\n[renewalparams]\nautorenew = False\n");
        return text;
    };
    // The section's own keys end where the next section or subsection (`[[webroot_map]]`) starts.
    let end = lines[start + 1..]
        .iter()
        .position(|line| line.trim_start().starts_with('['))
        .map_or(lines.len(), |at| start + 1 + at);
    let is_autorenew = |line: &&str| line.split_once('=').is_some_and(|(key, _)| key.trim() == "autorenew");
    let kept: Vec<&str> = lines[start + 1..end].iter().filter(|line| !is_autorenew(line)).copied().collect();
    lines.splice(start + 1..end, kept.into_iter().chain(std::iter::once("autorenew = False")));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

const LIVE_README: &str = "This directory contains your keys and certificates.\n\n\
`privkey.pem`  : the private key for your certificate.\n\
`fullchain.pem`: the certificate file used in most server software.\n\
`chain.pem`    : used for OCSP stapling in Nginx >=1.3.7.\n\
`cert.pem`     : will break many server configurations, and should not be used\n                 without reading further documentation (see link below).\n\n\
WARNING: DO NOT MOVE OR RENAME THESE FILES!\n         The symlinks point into `../../archive/`; `masstockctl certs renew` keeps them.\n";

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(StoreError::Name(name.to_owned()));
    }
    Ok(())
}

/// `<kind>N.pem` → N.
fn version_of(file_name: &str, kind: &str) -> Option<u32> {
    let digits = file_name.strip_prefix(kind)?.strip_suffix(".pem")?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every N for which some `<kind>N.pem` exists in `archive`.
fn archive_versions(archive: &Path) -> Result<Vec<u32>, StoreError> {
    let entries = match std::fs::read_dir(archive) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io("read", archive)(error)),
    };
    let mut versions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("read", archive))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        versions.extend(KINDS.iter().find_map(|kind| version_of(&file, kind)));
    }
    Ok(versions)
}

fn link_version(cert_dir: &Path, name: &str, version: u32) -> Result<(), StoreError> {
    let archive = cert_dir.join("archive").join(name);
    if let Some(kind) = KINDS.iter().find(|kind| !archive.join(format!("{kind}{version}.pem")).exists()) {
        return Err(StoreError::MissingVersion { path: archive, version, missing: format!("{kind}{version}.pem") });
    }
    let live = cert_dir.join("live").join(name);
    create_private_dir(&live)?;
    for kind in KINDS {
        let target = Path::new("../../archive").join(name).join(format!("{kind}{version}.pem"));
        let link = live.join(format!("{kind}.pem"));
        let temporary = live.join(format!(".{kind}.pem.{}.tmp", random_suffix()));
        std::os::unix::fs::symlink(&target, &temporary).map_err(io("create the symlink", &temporary))?;
        if let Err(error) = std::fs::rename(&temporary, &link) {
            let _ = std::fs::remove_file(&temporary);
            return Err(io("replace", &link)(error));
        }
    }
    sync_dir(&live)
}

fn write_renewal_conf(cert_dir: &Path, name: &str, conf: &RenewalConf) -> Result<(), StoreError> {
    let path = renewal_conf_path(cert_dir, name);
    if let Some(existing) = read_renewal_conf(cert_dir, name)? {
        if !is_ours(&existing) {
            // Taking a certbot lineage over: keep what certbot wrote, under a name its glob skips.
            let backup = cert_dir.join("renewal").join(format!("{name}.conf.certbot"));
            crate::atomic::write_file(&backup, existing.as_bytes(), 0o600).map_err(io("write", &backup))?;
        }
    }
    let text = render_renewal_conf(cert_dir, name, conf);
    crate::atomic::write_file(&path, text.as_bytes(), 0o644).map_err(io("write", &path))
}

/// Quotes a configobj value when it holds a character configobj would read as syntax.
fn configobj_value(value: &str) -> String {
    if value.is_empty() || value.trim() != value || value.contains(['#', ',', '"', '\'', '=', '[', ']']) {
        if value.contains('"') {
            format!("'{value}'")
        } else {
            format!("\"{value}\"")
        }
    } else {
        value.to_owned()
    }
}

#[derive(Debug)]
struct ErrorState {
    message: String,
    at: DateTime<Utc>,
}

fn read_state(cert_dir: &Path, name: &str) -> Result<Option<ErrorState>, StoreError> {
    let path = cert_dir.join("masstockctl").join(format!("{name}.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io("read", &path)(error)),
    };
    let invalid = |message: String| StoreError::Invalid { path: path.clone(), message };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    let message = value["last_error"].as_str().ok_or_else(|| invalid("no `last_error` string".into()))?;
    let at = value["at"]
        .as_str()
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .ok_or_else(|| invalid("no RFC 3339 `at` time".into()))?;
    Ok(Some(ErrorState { message: message.to_owned(), at: at.with_timezone(&Utc) }))
}

/// Creates `dir` and its missing parents with mode 0700, as certbot does for `archive/`, `live/`
/// and `renewal/` (an existing folder keeps its mode).
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("create", dir))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir).and_then(|folder| folder.sync_all()).map_err(io("sync", dir))
}

fn random_suffix() -> String {
    let mut random = [0; 8];
    // A collision only makes the rename's temporary name clash, which `symlink` reports.
    let _ = getrandom::fill(&mut random);
    crate::secrets::hex(&random)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A leaf for `names`, signed by a test CA, valid `days` from now − 1 day, with `serial`.
    fn issue(names: &[&str], serial: u64, days: i64) -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "Test Intermediate CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf =
            rcgen::CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).unwrap();
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        leaf.serial_number = Some(rcgen::SerialNumber::from(serial));
        leaf.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        leaf.not_before = now - time::Duration::days(1);
        leaf.not_after = now + time::Duration::days(days);
        let leaf = leaf.signed_by(&key, &ca).unwrap();
        (key.serialize_pem(), leaf.pem(), ca.pem())
    }

    fn conf(names: &[&str]) -> RenewalConf {
        RenewalConf {
            server: "https://127.0.0.1:14000/dir".into(),
            webroot: PathBuf::from("/var/www/certbot"),
            names: names.iter().map(|name| (*name).to_owned()).collect(),
            key_type: "ecdsa".into(),
        }
    }

    fn write(cert_dir: &Path, name: &str, serial: u64) -> u32 {
        let (key, cert, chain) = issue(&[name, &format!("app.{name}")], serial, 90);
        let fullchain = format!("{cert}{chain}");
        let new = NewVersion { privkey_pem: &key, cert_pem: &cert, chain_pem: &chain, fullchain_pem: &fullchain };
        write_version(cert_dir, name, &new, &conf(&[name])).unwrap()
    }

    #[test]
    fn parses_names_serial_issuer_validity_and_ari_id() {
        let (key, cert, chain) = issue(&["masstock.fr", "app.masstock.fr"], 0x00ab_cdef_0123, 90);
        // The first certificate of a PEM counts, whatever comes before or after it.
        let info = parse_certificate(&format!("{key}{cert}{chain}")).unwrap();
        assert_eq!(info.names, ["masstock.fr", "app.masstock.fr"]);
        assert_eq!(info.serial, "abcdef0123");
        assert_eq!(info.issuer, "CN=Test Intermediate CA");
        assert_eq!((info.not_after - info.not_before).num_days(), 91);
        // RFC 9773: the DER serial (a leading zero byte keeps 0xab positive), base64url.
        let ari_id = info.ari_id.expect("the leaf has an authority key identifier");
        assert_eq!(ari_id.serial, "AKvN7wEj");
        assert!(!ari_id.authority_key_identifier.is_empty());
        assert!(parse_certificate(&key).unwrap_err().to_string().contains("no `-----BEGIN CERTIFICATE-----`"));
    }

    #[test]
    fn versions_live_links_and_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let cert_dir = dir.path();
        assert!(lineages(cert_dir).unwrap().is_empty());
        assert_eq!(write(cert_dir, "masstock.fr", 1), 1);
        assert_eq!(write(cert_dir, "masstock.fr", 2), 2);

        let live = cert_dir.join("live/masstock.fr");
        for kind in KINDS {
            let target = std::fs::read_link(live.join(format!("{kind}.pem"))).unwrap();
            assert_eq!(target, Path::new(&format!("../../archive/masstock.fr/{kind}2.pem")), "relative, at 2");
        }
        for version in [1, 2] {
            let key = cert_dir.join(format!("archive/masstock.fr/privkey{version}.pem"));
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // No temporary link is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&live)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let lineage = read_lineage(cert_dir, "masstock.fr").unwrap().unwrap();
        assert_eq!((lineage.version, lineage.cert.serial.as_str(), lineage.manager), (2, "2", Manager::Masstockctl));
        assert_eq!(versions(cert_dir, "masstock.fr").unwrap(), [1, 2]);

        switch_to(cert_dir, "masstock.fr", 1).unwrap();
        let lineage = read_lineage(cert_dir, "masstock.fr").unwrap().unwrap();
        assert_eq!((lineage.version, lineage.cert.serial.as_str()), (1, "1"));
        let fullchain = std::fs::read_to_string(live.join("fullchain.pem")).unwrap();
        assert_eq!(fullchain, std::fs::read_to_string(cert_dir.join("archive/masstock.fr/fullchain1.pem")).unwrap());

        let missing = switch_to(cert_dir, "masstock.fr", 7).unwrap_err().to_string();
        assert!(missing.contains("has no version 7") && missing.contains("archive/masstock.fr"), "{missing}");
        // A third version after a rollback is still a new number.
        assert_eq!(write(cert_dir, "masstock.fr", 3), 3);

        let conf = std::fs::read_to_string(renewal_conf_path(cert_dir, "masstock.fr")).unwrap();
        assert!(conf.starts_with(MARKER_COMMENT) && is_ours(&conf), "{conf}");
        assert!(
            conf.contains("\n[renewalparams]\nauthenticator = webroot\nwebroot_path = /var/www/certbot,\n"),
            "{conf}"
        );
        assert!(conf.contains("autorenew = False\n[[webroot_map]]\nmasstock.fr = /var/www/certbot\n"), "{conf}");
        assert!(conf.contains(&format!("cert = {}\n", live.join("cert.pem").display())), "{conf}");
        assert!(live.join("README").exists());
        assert_eq!(lineage_names(cert_dir).unwrap(), ["masstock.fr"], "the live README is not a lineage");
    }

    #[test]
    fn a_certbot_lineage_is_recognised_and_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let cert_dir = dir.path();
        // What certbot 2.x leaves: archive version 1, relative links, a README, its renewal conf.
        let (key, cert, chain) = issue(&["masstock.fr", "api.masstock.fr"], 0x51, 90);
        std::fs::create_dir_all(cert_dir.join("archive/masstock.fr")).unwrap();
        std::fs::create_dir_all(cert_dir.join("live/masstock.fr")).unwrap();
        std::fs::create_dir_all(cert_dir.join("renewal")).unwrap();
        std::fs::write(cert_dir.join("live/README"), "This directory contains your keys and certificates.\n").unwrap();
        for (kind, text) in [
            ("cert", cert.clone()),
            ("chain", chain.clone()),
            ("fullchain", format!("{cert}{chain}")),
            ("privkey", key),
        ] {
            std::fs::write(cert_dir.join(format!("archive/masstock.fr/{kind}1.pem")), text).unwrap();
            std::os::unix::fs::symlink(
                format!("../../archive/masstock.fr/{kind}1.pem"),
                cert_dir.join(format!("live/masstock.fr/{kind}.pem")),
            )
            .unwrap();
        }
        let certbot_conf = format!(
            "# renew_before_expiry = 30 days\nversion = 2.1.0\narchive_dir = {0}/archive/masstock.fr\n\
             cert = {0}/live/masstock.fr/cert.pem\nprivkey = {0}/live/masstock.fr/privkey.pem\n\
             chain = {0}/live/masstock.fr/chain.pem\nfullchain = {0}/live/masstock.fr/fullchain.pem\n\n\
             # Options used in the renewal process\n[renewalparams]\naccount = 0123456789abcdef0123456789abcdef\n\
             authenticator = webroot\nwebroot_path = /var/www/certbot,\n\
             server = https://acme-v02.api.letsencrypt.org/directory\nkey_type = ecdsa\n[[webroot_map]]\n\
             masstock.fr = /var/www/certbot\napi.masstock.fr = /var/www/certbot\n",
            cert_dir.display()
        );
        std::fs::write(renewal_conf_path(cert_dir, "masstock.fr"), &certbot_conf).unwrap();

        let found = lineages(cert_dir).unwrap();
        assert_eq!(found.len(), 1);
        let lineage = &found[0];
        assert_eq!((lineage.name.as_str(), lineage.version, lineage.manager), ("masstock.fr", 1, Manager::Certbot));
        assert_eq!(lineage.cert.names, ["masstock.fr", "api.masstock.fr"]);
        assert_eq!(lineage.cert.serial, "51");

        // `autorenew = False` goes at the end of `[renewalparams]`'s own keys, before the map.
        let disabled = disable_autorenew(&certbot_conf);
        assert!(disabled.contains("key_type = ecdsa\nautorenew = False\n[[webroot_map]]\n"), "{disabled}");
        assert_eq!(disable_autorenew(&disabled), disabled, "idempotent");
        assert!(!is_ours(&disabled));

        // Taking it over: version 2, our conf, certbot's kept where its glob does not look.
        assert_eq!(write(cert_dir, "masstock.fr", 0x52), 2);
        let lineage = read_lineage(cert_dir, "masstock.fr").unwrap().unwrap();
        assert_eq!((lineage.version, lineage.manager), (2, Manager::Masstockctl));
        assert_eq!(std::fs::read_to_string(cert_dir.join("renewal/masstock.fr.conf.certbot")).unwrap(), certbot_conf);
    }

    #[test]
    fn errors_are_recorded_cleared_and_name_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let cert_dir = dir.path();
        write(cert_dir, "masstock.fr", 1);
        record_error(cert_dir, "masstock.fr", Some("nginx -t failed")).unwrap();
        let lineage = read_lineage(cert_dir, "masstock.fr").unwrap().unwrap();
        assert_eq!(lineage.last_error.as_deref(), Some("nginx -t failed"));
        assert!(lineage.last_error_at.is_some_and(|at| (Utc::now() - at).num_seconds() < 60));
        record_error(cert_dir, "masstock.fr", None).unwrap();
        record_error(cert_dir, "masstock.fr", None).unwrap();
        assert_eq!(read_lineage(cert_dir, "masstock.fr").unwrap().unwrap().last_error, None);

        assert!(read_lineage(cert_dir, "absent.fr").unwrap().is_none());
        assert!(matches!(read_lineage(cert_dir, "../etc"), Err(StoreError::Name(_))));
        std::fs::write(cert_dir.join("archive/masstock.fr/cert1.pem"), "garbage").unwrap();
        switch_to(cert_dir, "masstock.fr", 1).unwrap();
        let error = read_lineage(cert_dir, "masstock.fr").unwrap_err().to_string();
        assert!(error.contains("live/masstock.fr/cert.pem"), "{error}");
    }
}
