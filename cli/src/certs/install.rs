//! The verified install of a new certificate version: `nginx -t`, reload, then a TLS handshake
//! to every name through the edge must show the new serial; otherwise the lineage goes back to
//! its previous version and nginx is reloaded on it.
//!
//! The handshake goes with SNI through `upstream_host:https_port`, until the served leaf's serial
//! is the new one (up to 5 s: nginx swaps workers asynchronously). Checking the *served* serial,
//! not only that reload exited 0, catches what otherwise shows up weeks later as an expired
//! certificate: a reload that did not happen, a site that points at another file, a second nginx on
//! the port, a `default_server` answering for a name. The handshake does not verify the chain: the
//! question is which certificate nginx loaded (`verify_install`, `served_serial`, `served`; doctor
//! asks `served` too). On any failure the `live/` links go back to the previous version, nginx is
//! reloaded on it, the error is recorded for `certs status`, and the command exits 1.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::certs::store;
use crate::config::Stack;
use crate::deploy::edge;

/// How long nginx gets to serve the new certificate after a reload (its workers are replaced
/// asynchronously: old workers finish their connections first).
const SERVED_WITHIN: Duration = Duration::from_secs(5);

/// Why a new version could not be installed; the lineage is back on its previous version when
/// there was one.
#[derive(Debug, thiserror::Error)]
#[error("{failure}; {rollback}")]
pub struct InstallError {
    pub failure: Box<InstallFailure>,
    /// Where the lineage stands after going back: said for the operator.
    pub rollback: String,
}

/// Why nginx does not serve a new version.
#[derive(Debug, thiserror::Error)]
pub enum InstallFailure {
    #[error("nginx refused the new certificate: {0}")]
    Refused(edge::EdgeCommandError),
    /// Reloading failed: the error and its causes on one line.
    #[error("{}", crate::error::chain(.0).join(": "))]
    NotReloaded(edge::EdgeError),
    #[error("nginx serves `{name}` with serial {served} instead of the new {serial} after {}s", SERVED_WITHIN.as_secs())]
    OldServed { name: String, served: String, serial: String },
    #[error("the TLS handshake for `{name}` through {address} failed: {error}")]
    Handshake { name: String, address: SocketAddr, error: HandshakeError },
}

/// Why a TLS handshake through the edge shows no certificate: the library's own words.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Tls(rustls::Error),
    #[error("{0}")]
    Name(rustls::pki_types::InvalidDnsNameError),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("no certificate was presented")]
    NoCertificate,
    /// The leaf cannot be read.
    #[error("{0}")]
    Leaf(store::StoreError),
}

/// After `store::write_version` made `version` live: tests and reloads nginx and checks that
/// every name is served with `serial`. On failure, switches back to `previous` and reloads.
pub fn verify_install(
    stack: &Stack,
    lineage: &str,
    names: &[String],
    serial: &str,
    previous: Option<u32>,
) -> Result<(), InstallError> {
    let Err(failure) = test_reload_and_check(stack, names, serial) else { return Ok(()) };
    let cert_dir = &stack.config.acme.cert_dir;
    let rollback = match previous {
        None => "there is no previous version to go back to".to_owned(),
        Some(version) => match store::switch_to(cert_dir, lineage, version) {
            Err(error) => format!("and going back to version {version} failed too: {error}"),
            // The previous version was serving before: no test, straight back to it.
            Ok(()) => match edge::reload(stack).map_err(|error| crate::error::chain(&error).join(": ")) {
                Ok(()) => format!("`{lineage}` is back on version {version} and nginx was reloaded on it"),
                Err(error) => format!("`{lineage}` is back on version {version}, but reloading nginx failed: {error}"),
            },
        },
    };
    Err(InstallError { failure: Box::new(failure), rollback })
}

fn test_reload_and_check(stack: &Stack, names: &[String], serial: &str) -> Result<(), InstallFailure> {
    let edge_config = &stack.config.edge;
    edge::run(stack, &edge_config.test_command).map_err(InstallFailure::Refused)?;
    edge::reload(stack).map_err(InstallFailure::NotReloaded)?;
    let address = SocketAddr::new(edge_config.upstream_host, edge_config.https_port);
    for name in names {
        let deadline = Instant::now() + SERVED_WITHIN;
        loop {
            let served = served_serial(address, name);
            match served {
                Ok(served) if served.eq_ignore_ascii_case(serial) => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
                Ok(served) => {
                    return Err(InstallFailure::OldServed { name: name.clone(), served, serial: serial.to_owned() })
                }
                Err(error) => return Err(InstallFailure::Handshake { name: name.clone(), address, error }),
            }
        }
    }
    Ok(())
}

/// The serial of the certificate the edge presents for `name` (SNI).
pub fn served_serial(address: SocketAddr, name: &str) -> Result<String, HandshakeError> {
    served(address, name).map(|served| served.info.serial)
}

/// What the edge presents for `name` (SNI).
#[derive(Debug)]
pub struct Served {
    /// What its leaf certificate says: names, serial, issuer, dates.
    pub info: store::CertInfo,
    /// The chain as sent, the leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

/// The certificate chain the edge presents for `name` (SNI), and what its leaf says.
pub fn served(address: SocketAddr, name: &str) -> Result<Served, HandshakeError> {
    let chain = served_chain(address, name)?;
    let leaf = chain.first().ok_or(HandshakeError::NoCertificate)?;
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(leaf.as_ref())
    );
    let info = store::parse_certificate(&pem).map_err(HandshakeError::Leaf)?;
    Ok(Served { info, chain })
}

/// The certificate chain the edge presents for `name`, the leaf first. It is not verified here:
/// what matters is which certificate nginx loaded (compared with the one just issued, or the
/// one on disk); `trust::distrust` judges the chain when that is the question.
fn served_chain(address: SocketAddr, name: &str) -> Result<Vec<CertificateDer<'static>>, HandshakeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(HandshakeError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_owned()).map_err(HandshakeError::Name)?;
    let mut connection = rustls::ClientConnection::new(Arc::new(config), server_name).map_err(HandshakeError::Tls)?;
    let mut socket = TcpStream::connect_timeout(&address, Duration::from_secs(5)).map_err(HandshakeError::Io)?;
    socket.set_read_timeout(Some(Duration::from_secs(5))).map_err(HandshakeError::Io)?;
    socket.set_write_timeout(Some(Duration::from_secs(5))).map_err(HandshakeError::Io)?;
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).map_err(HandshakeError::Io)?;
    }
    let chain: Vec<CertificateDer<'static>> = connection
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|certificate| certificate.clone().into_owned())
        .collect();
    if chain.is_empty() {
        return Err(HandshakeError::NoCertificate);
    }
    // Close politely; nginx does not care either way.
    connection.send_close_notify();
    let _ = connection.write_tls(&mut socket);
    let _ = socket.flush();
    Ok(chain)
}

/// Accepts any certificate, still checking the handshake's signatures with the provider.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_install_says_which_step_refused_and_where_the_lineage_stands() {
        let old = InstallFailure::OldServed { name: "app.example".into(), served: "0A".into(), serial: "0B".into() };
        let error =
            InstallError { failure: Box::new(old), rollback: "there is no previous version to go back to".into() };
        assert_eq!(
            error.to_string(),
            "nginx serves `app.example` with serial 0A instead of the new 0B after 5s; there is no previous version to go back to"
        );
        let handshake = InstallFailure::Handshake {
            name: "app.example".into(),
            address: SocketAddr::from(([127, 0, 0, 1], 443)),
            error: HandshakeError::NoCertificate,
        };
        assert_eq!(
            handshake.to_string(),
            "the TLS handshake for `app.example` through 127.0.0.1:443 failed: no certificate was presented"
        );
    }
}
