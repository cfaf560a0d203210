//! Which certificate authorities masstockctl trusts, and whether a presented chain leads to one:
//! the system's roots (`rustls-native-certs`: /etc/ssl/certs on Debian) plus those of a bundle
//! deploy.toml names (`[acme] ca_bundle` for the CA's API, `[edge] ca_bundle` for the sites).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};

/// Why the roots to trust, or a TLS client trusting them, cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("failed to read `{}`: {error}", .bundle.display())]
    Read { bundle: PathBuf, error: rustls::pki_types::pem::Error },
    #[error("`{}` holds an unusable certificate: {error}", .bundle.display())]
    Unusable { bundle: PathBuf, error: rustls::Error },
    #[error("cannot set up TLS: {0}")]
    Tls(rustls::Error),
}

/// The system's roots (unreadable ones skipped: the chain at hand may not need them) plus every
/// certificate of `bundle`; an unreadable bundle, or one with an unusable certificate, is an error.
pub fn root_store(bundle: Option<&Path>) -> Result<RootCertStore, TrustError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(bundle) = bundle {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(bundle)
            .and_then(Iterator::collect)
            .map_err(|error| TrustError::Read { bundle: bundle.to_path_buf(), error })?;
        for certificate in certificates {
            roots.add(certificate).map_err(|error| TrustError::Unusable { bundle: bundle.to_path_buf(), error })?;
        }
    }
    Ok(roots)
}

/// A TLS client configuration (ring, the safe protocol versions) that trusts `roots`.
pub fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig, TrustError> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TrustError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Why a client trusting `roots` refuses `chain` (the leaf first, as a TLS server presents it)
/// for `name` at the instant `at`, or `None` when it accepts it. Not being valid for `name` is
/// left out: the certificate's names are another question, with its own answer. Callers judge
/// the chain at an instant inside the leaf's validity, so that a date refused is an issuer's.
#[must_use]
pub fn distrust(roots: Arc<RootCertStore>, chain: &[CertificateDer<'_>], name: &str, at: UnixTime) -> Option<String> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Some("no certificate was presented".to_owned());
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match WebPkiServerVerifier::builder_with_provider(roots, provider).build() {
        Ok(verifier) => verifier,
        Err(error) => return Some(format!("no root certificate to check it against: {error}")),
    };
    let server_name = match ServerName::try_from(name.to_owned()) {
        Ok(server_name) => server_name,
        Err(error) => return Some(format!("`{name}` is not a server name: {error}")),
    };
    match verifier.verify_server_cert(leaf, intermediates, &server_name, &[], at) {
        Ok(_)
        | Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => None,
        Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            Some("no trusted root vouches for its issuer (UnknownIssuer)".to_owned())
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::BadSignature)) => Some(
            "a trusted certificate bears its issuer's name, not its key (BadSignature): another CA of the same \
             name, such as a test CA started again"
                .to_owned(),
        ),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        )) => Some(
            "a certificate of the chain above the leaf is outside its validity (an intermediate expired)".to_owned(),
        ),
        Err(error) => Some(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_bundle_is_named() {
        let error = root_store(Some(Path::new("/nowhere/bundle.pem"))).unwrap_err();
        assert!(error.to_string().starts_with("failed to read `/nowhere/bundle.pem`: "), "{error}");
    }
}
