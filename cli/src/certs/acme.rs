//! The ACME client (RFC 8555, instant-acme): our own HTTP transport (system roots plus
//! `[acme] ca_bundle`, a timeout per request, Retry-After kept), the account created once and
//! stored with mode 0600, and issuing one certificate over HTTP-01 through the webroot, with a
//! self-check of every challenge before the CA is asked to validate it.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeHandle, ChallengeType,
    Error as AcmeApiError, ExternalAccountKey, HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, Problem,
    RetryPolicy,
};

use crate::certs::due::AriWindow;
use crate::certs::store::CertInfo;

/// How long one request to the CA may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of one ACME operation after a rejected nonce, beyond instant-acme's own three tries
/// per request: a CA that rejects most nonces (Pebble's `PEBBLE_WFE_NONCEREJECT=90`) still lets
/// a fresh nonce through eventually, and each retry costs one round trip. An operation of two
/// requests (downloading the certificate refreshes the order first) passes all of them with
/// probability (1 − 0.9³)² ≈ 7 % at 90 % rejection: 40 retries failed about once in twenty
/// runs, 400 fail about never (0.93⁴⁰⁰), in at most 80 s of pauses. The CA asks for exactly
/// this retry (RFC 8555 §6.5), so it costs a real CA nothing.
const BAD_NONCE_RETRIES: u32 = 400;
/// Retries of one ACME operation after a timeout, a connection failure or a 5xx answer.
const TRANSIENT_RETRIES: u32 = 4;

/// Why talking to the CA failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the CA refused: rate limit hit ({detail}); retry after {}", retry_after.as_deref().unwrap_or("an unspecified time"))]
    RateLimited { detail: String, retry_after: Option<String> },
    #[error("the self-check of the HTTP-01 challenge for `{name}` failed: {reason}; the CA was not asked to validate anything")]
    SelfCheck { name: String, url: String, reason: String },
    #[error("the CA could not validate `{name}`: {detail}")]
    Validation { name: String, detail: String },
    #[error("{what}: {detail}")]
    Acme { what: String, detail: String },
    #[error("failed to {what} `{path}`")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The roots to trust for the CA's API, or the TLS client, cannot be had.
    #[error("{0}")]
    Trust(crate::certs::trust::TrustError),
    #[error("{0}")]
    Other(String),
}

impl AcmeError {
    fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Self::Io { what, path: path.to_path_buf(), source }
    }

    /// A hint for the operator, when there is something to do.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::RateLimited { .. } => Some("wait until then; rehearse with `certs renew --dry-run`, which uses the staging CA".into()),
            Self::SelfCheck { url, .. } => Some(format!(
                "the CA fetches `{url}` from the Internet: check that the domain points at this host, that port 80 reaches nginx, and that the deployed site serves `/.well-known/acme-challenge/` from `[acme] webroot` (`masstockctl deploy`)"
            )),
            _ => None,
        }
    }
}

/// Where and how to reach the CA.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: String,
    pub ca_bundle: Option<PathBuf>,
    /// External Account Binding: the key id and the raw HMAC key.
    pub eab: Option<(String, Vec<u8>)>,
    /// The folder that holds the account files (`<cert_dir>/accounts`).
    pub accounts_dir: PathBuf,
}

/// Where HTTP-01 challenges are written and how the self-check reaches them.
#[derive(Debug, Clone)]
pub struct Http01 {
    pub webroot: PathBuf,
    /// Where nginx listens for plain HTTP: `edge.upstream_host:edge.http_port`.
    pub edge_http: SocketAddr,
}

/// A certificate just issued, in certbot's four files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub privkey_pem: String,
    pub cert_pem: String,
    pub chain_pem: String,
    pub fullchain_pem: String,
}

/// The HTTP transport instant-acme talks through.
struct AcmeHttp {
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    last_retry_after: Arc<Mutex<Option<String>>>,
}

impl AcmeHttp {
    fn new(ca_bundle: Option<&Path>, last_retry_after: Arc<Mutex<Option<String>>>) -> Result<Self, AcmeError> {
        let roots = crate::certs::trust::root_store(ca_bundle).map_err(AcmeError::Trust)?;
        if roots.is_empty() {
            return Err(AcmeError::Other(
                "no root certificate to trust: install `ca-certificates` or set `[acme] ca_bundle`".into(),
            ));
        }
        let tls = crate::certs::trust::client_config(roots).map_err(AcmeError::Trust)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Self { inner: HyperClient::builder(TokioExecutor::new()).build(connector), last_retry_after })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, AcmeApiError>> + Send>> {
        let response = self.inner.request(request);
        let slot = Arc::clone(&self.last_retry_after);
        Box::pin(async move {
            let response = tokio::time::timeout(REQUEST_TIMEOUT, response)
                .await
                .map_err(|_| AcmeApiError::Other(Box::new(Transient("the request to the CA timed out".into()))))?
                .map_err(|error| AcmeApiError::Other(Box::new(Transient(format!("the CA is unreachable: {error}")))))?;
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            if let Ok(mut slot) = slot.lock() {
                *slot = retry_after;
            }
            Ok(BytesResponse::from(response))
        })
    }
}

/// A failure of the transport worth retrying (timeout, connection refused or reset).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transient(String);

const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

/// Whether an error is worth another try, and how many tries it gets.
/// A 4xx refusal of an order naming the certificate it replaces that ordering again without
/// `replaces` can cure: not a rate limit, a forgotten account or a stale nonce.
fn refuses_replaces(error: &AcmeApiError) -> bool {
    match error {
        AcmeApiError::Api(problem) => {
            let client_error = problem.status.is_some_and(|status| (400..500).contains(&status));
            let kind = problem.r#type.as_deref().unwrap_or_default();
            client_error && ![RATE_LIMITED, ACCOUNT_DOES_NOT_EXIST, BAD_NONCE].contains(&kind)
        }
        _ => false,
    }
}

fn retries_for(error: &AcmeApiError) -> Option<u32> {
    match error {
        AcmeApiError::Api(problem) if problem.r#type.as_deref() == Some(BAD_NONCE) => Some(BAD_NONCE_RETRIES),
        AcmeApiError::Api(Problem { status: Some(status), .. }) if *status >= 500 => Some(TRANSIENT_RETRIES),
        AcmeApiError::Other(inner) if inner.is::<Transient>() => Some(TRANSIENT_RETRIES),
        AcmeApiError::Http(_) | AcmeApiError::Hyper(_) => Some(TRANSIENT_RETRIES),
        _ => None,
    }
}

/// The pause before retry number `attempt` (1-based): short for a rejected nonce (a new one is
/// already in hand), exponential from half a second to eight for the rest.
fn backoff(error: &AcmeApiError, attempt: u32) -> Duration {
    let nonce = matches!(error, AcmeApiError::Api(problem) if problem.r#type.as_deref() == Some(BAD_NONCE));
    if nonce {
        Duration::from_millis(20 * u64::from(attempt.min(10)))
    } else {
        Duration::from_millis(500 * 2u64.pow(attempt.saturating_sub(1).min(4)))
    }
}

/// Evaluates `$operation` (an expression giving a future) until it succeeds or fails in a way
/// retrying cannot fix. A macro rather than a function: the operations borrow the order mutably.
macro_rules! retrying {
    ($operation:expr) => {{
        let mut attempt = 0u32;
        loop {
            match $operation.await {
                Ok(value) => break Ok(value),
                Err(error) => match retries_for(&error) {
                    Some(limit) if attempt < limit => {
                        attempt += 1;
                        tokio::time::sleep(backoff(&error, attempt)).await;
                    }
                    _ => break Err(error),
                },
            }
        }
    }};
}

/// A connected ACME account.
pub struct AcmeClient {
    settings: AcmeSettings,
    account: Account,
    last_retry_after: Arc<Mutex<Option<String>>>,
    /// Whether the account was registered by this client (first use, or the CA forgot it).
    pub registered: bool,
    pub registered_again: bool,
}

impl std::fmt::Debug for AcmeClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AcmeClient").field("directory", &self.settings.directory).finish_non_exhaustive()
    }
}

impl AcmeClient {
    /// Restores the stored account for the directory, or registers one and stores it.
    pub async fn connect(settings: AcmeSettings) -> Result<Self, AcmeError> {
        let last_retry_after = Arc::default();
        let path = account_path(&settings.accounts_dir, &settings.directory);
        let mut registered = false;
        let account = match fs_err::read_to_string(&path) {
            Ok(json) => {
                let credentials: AccountCredentials = serde_json::from_str(&json).map_err(|error| {
                    AcmeError::Other(format!("`{}` is not an ACME account: {error}", path.display()))
                })?;
                let restored = retrying!(Account::builder_with_http(Box::new(AcmeHttp::new(
                    settings.ca_bundle.as_deref(),
                    Arc::clone(&last_retry_after)
                )?))
                .from_credentials(clone_credentials(&credentials)?));
                restored.map_err(|error| api_error("failed to reach the ACME directory", &error, &last_retry_after))?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                registered = true;
                register(&settings, &last_retry_after, &path).await?
            }
            Err(error) => return Err(AcmeError::io("read", &path)(error)),
        };
        Ok(Self { settings, account, last_retry_after, registered, registered_again: false })
    }

    /// The account's URL at the CA.
    #[must_use]
    pub fn account_id(&self) -> &str {
        self.account.id()
    }

    /// Registers a new account (the CA forgot ours) and stores it over the old file.
    async fn register_again(&mut self) -> Result<(), AcmeError> {
        self.registered_again = true;
        let path = account_path(&self.settings.accounts_dir, &self.settings.directory);
        self.account = register(&self.settings, &self.last_retry_after, &path).await?;
        Ok(())
    }

    /// The CA's suggested renewal window for `cert` (ARI, RFC 9773); `None` when the CA does not
    /// offer ARI or the certificate lacks the identifiers it needs.
    pub async fn renewal_info(&self, cert: &CertInfo) -> Result<Option<AriWindow>, AcmeError> {
        let Some(identifier) = &cert.ari_id else { return Ok(None) };
        match retrying!(self.account.renewal_info(identifier)) {
            Ok((info, _)) => Ok(Some(AriWindow {
                start: to_chrono(info.suggested_window.start),
                end: to_chrono(info.suggested_window.end),
                explanation_url: info.explanation_url,
            })),
            Err(AcmeApiError::Unsupported(_)) => Ok(None),
            Err(error) => Err(api_error("failed to fetch the renewal information", &error, &self.last_retry_after)),
        }
    }

    /// Issues one certificate for `names` (the first is the subject's common name), answering
    /// HTTP-01 through the webroot. `replaces` is the certificate it renews, for ARI.
    pub async fn issue(
        &mut self,
        names: &[String],
        http01: &Http01,
        replaces: Option<&CertInfo>,
    ) -> Result<Issued, AcmeError> {
        match self.try_issue(names, http01, replaces).await {
            Err(Attempt::AccountGone) => {
                self.register_again().await?;
                self.try_issue(names, http01, replaces).await.map_err(|failure| match failure {
                    Attempt::AccountGone => AcmeError::Other("the CA forgot the account it just registered".into()),
                    Attempt::Failed(error) => error,
                })
            }
            Err(Attempt::Failed(error)) => Err(error),
            Ok(issued) => Ok(issued),
        }
    }

    async fn try_issue(
        &mut self,
        names: &[String],
        http01: &Http01,
        replaces: Option<&CertInfo>,
    ) -> Result<Issued, Attempt> {
        let slot = &self.last_retry_after;
        let fail = |what: &str, error: &AcmeApiError| {
            if is_problem(error, ACCOUNT_DOES_NOT_EXIST) {
                Attempt::AccountGone
            } else {
                Attempt::Failed(api_error(what, error, slot))
            }
        };
        let identifiers: Vec<Identifier> = names.iter().map(|name| Identifier::Dns(name.clone())).collect();
        let replaced = replaces.and_then(|cert| cert.ari_id.clone());
        let mut new_order = NewOrder::new(&identifiers);
        if let Some(replaced) = &replaced {
            new_order = new_order.replaces(replaced.clone());
        }
        let mut order = match retrying!(self.account.new_order(&new_order)) {
            // No ARI at this CA: `replaces` is refused before any request. Or the CA refuses to
            // have this certificate replaced by this account (certbot's account issued it, we
            // registered again, it was replaced already): order without it rather than fail at
            // every run until the certificate expires.
            Err(AcmeApiError::Unsupported(_)) if replaced.is_some() => {
                retrying!(self.account.new_order(&NewOrder::new(&identifiers)))
            }
            Err(error) if replaced.is_some() && refuses_replaces(&error) => {
                retrying!(self.account.new_order(&NewOrder::new(&identifiers)))
            }
            other => other,
        }
        .map_err(|error| fail("failed to place the order", &error))?;

        // First pass: every pending challenge written to the webroot and fetched by us, before
        // the CA is asked to validate any of them.
        // (name, token, key authorization) of each pending challenge.
        let mut challenges: Vec<(String, String, String)> = Vec::new();
        walk_authorizations(&mut order, &fail, async |authorization| {
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => return Ok(()),
                status => {
                    return Err(Attempt::Failed(AcmeError::Acme {
                        what: format!("the authorization for `{}` is {status:?}", authorization.name),
                        detail: "the CA will not validate it again; retry later".into(),
                    }))
                }
            }
            let Some(challenge) = authorization.http01 else {
                return Err(Attempt::Failed(AcmeError::Acme {
                    what: format!("no HTTP-01 challenge for `{}`", authorization.name),
                    detail: "the CA offers other challenge types only".into(),
                }));
            };
            // A walk that restarted visits the same authorizations again.
            if !challenges.iter().any(|(_, token, _)| *token == challenge.token) {
                let key_authorization = challenge.key_authorization().as_str().to_owned();
                challenges.push((authorization.name, challenge.token.clone(), key_authorization));
            }
            Ok(())
        })
        .await?;
        let _tokens = TokenFiles::write(&http01.webroot, &challenges).map_err(Attempt::Failed)?;
        for (name, token, key_authorization) in &challenges {
            self_check(http01, name, token, key_authorization).await.map_err(Attempt::Failed)?;
        }

        // Second pass: the CA may validate now.
        let pending: HashSet<&str> = challenges.iter().map(|(_, token, _)| token.as_str()).collect();
        let mut ready: HashSet<String> = HashSet::new();
        walk_authorizations(&mut order, &fail, async |authorization| {
            let Some(mut challenge) = authorization.http01 else { return Ok(()) };
            if !pending.contains(challenge.token.as_str()) || ready.contains(&challenge.token) {
                return Ok(());
            }
            retrying!(challenge.set_ready()).map_err(|error| fail("failed to start the validation", &error))?;
            ready.insert(challenge.token.clone());
            Ok(())
        })
        .await?;

        let policy =
            RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(90));
        let status =
            retrying!(order.poll_ready(&policy)).map_err(|error| fail("the order did not become ready", &error))?;
        if status != OrderStatus::Ready {
            return Err(Attempt::Failed(validation_failure(&mut order).await));
        }

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|error| Attempt::Failed(AcmeError::Other(format!("failed to generate the key: {error}"))))?;
        let csr = certificate_request(names, &key).map_err(Attempt::Failed)?;
        retrying!(order.finalize_csr(&csr)).map_err(|error| fail("the CA refused to finalize the order", &error))?;
        let fullchain = retrying!(order.poll_certificate(&policy))
            .map_err(|error| fail("failed to download the certificate", &error))?;
        let (cert_pem, chain_pem) = split_chain(&fullchain).map_err(Attempt::Failed)?;
        Ok(Issued {
            privkey_pem: key.serialize_pem(),
            fullchain_pem: format!("{cert_pem}{chain_pem}"),
            cert_pem,
            chain_pem,
        })
    }
}

/// Visits every authorization of `order`. A fetch that fails transiently restarts the walk, a
/// bounded number of times: a CA in trouble is not hammered, and the timer's run ends. `visit`
/// may therefore see an authorization more than once.
async fn walk_authorizations(
    order: &mut instant_acme::Order,
    fail: &impl Fn(&str, &AcmeApiError) -> Attempt,
    mut visit: impl AsyncFnMut(Authorization<'_>) -> Result<(), Attempt>,
) -> Result<(), Attempt> {
    let mut walks = 0;
    'walk: loop {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = match authorization {
                Ok(authorization) => authorization,
                Err(error) if retries_for(&error).is_some_and(|retries| walks < retries) => {
                    walks += 1;
                    tokio::time::sleep(backoff(&error, walks)).await;
                    continue 'walk;
                }
                Err(error) => return Err(fail("failed to fetch an authorization", &error)),
            };
            let status = authorization.status;
            let name = authorization.identifier().to_string();
            let http01 = authorization.challenge(ChallengeType::Http01);
            visit(Authorization { status, name, http01 }).await?;
        }
        return Ok(());
    }
}

/// What a walk shows of one authorization.
struct Authorization<'a> {
    status: AuthorizationStatus,
    /// The identifier it authorizes.
    name: String,
    /// Its HTTP-01 challenge, when the CA offers one.
    http01: Option<ChallengeHandle<'a>>,
}

/// What one attempt at issuing came to.
enum Attempt {
    /// The CA does not know the account (it was reset): register again and retry once.
    AccountGone,
    Failed(AcmeError),
}

/// Registers an account and stores its credentials (mode 0600) at `path`.
async fn register(
    settings: &AcmeSettings,
    last_retry_after: &Arc<Mutex<Option<String>>>,
    path: &Path,
) -> Result<Account, AcmeError> {
    let contact = format!("mailto:{}", settings.email);
    let contacts = [contact.as_str()];
    let new_account = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
    let eab = settings.eab.as_ref().map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
    let (account, credentials) = retrying!(Account::builder_with_http(Box::new(AcmeHttp::new(
        settings.ca_bundle.as_deref(),
        Arc::clone(last_retry_after)
    )?))
    .create(&new_account, settings.directory.clone(), eab.as_ref()))
    .map_err(|error| api_error("failed to register an ACME account", &error, last_retry_after))?;
    let json = serde_json::to_string_pretty(&credentials)
        .map_err(|error| AcmeError::Other(format!("failed to serialize the account: {error}")))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    create_private_dir(folder)?;
    crate::atomic::write_file(path, json.as_bytes(), 0o600).map_err(AcmeError::io("write", path))?;
    Ok(account)
}

/// `AccountCredentials` is not `Clone`; a JSON round trip copies it for a retried restore.
fn clone_credentials(credentials: &AccountCredentials) -> Result<AccountCredentials, AcmeError> {
    serde_json::to_string(credentials)
        .and_then(|json| serde_json::from_str(&json))
        .map_err(|error| AcmeError::Other(format!("failed to copy the account credentials: {error}")))
}

/// Where the account of `directory` is stored: `accounts/<host[:port]>/masstockctl/account.json`,
/// beside certbot's `accounts/<host>/directory/<id>/` (certbot's accounts are RSA JWKs that
/// instant-acme cannot use; certificates are not bound to accounts, so ours is separate).
#[must_use]
pub fn account_path(accounts_dir: &Path, directory: &str) -> PathBuf {
    let host = directory
        .split_once("://")
        .map_or(directory, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("ca")
        .replace(|character: char| !(character.is_ascii_alphanumeric() || ".-_:".contains(character)), "_");
    accounts_dir.join(host).join("masstockctl").join("account.json")
}

/// Creates `folder` and its missing parents with mode 0700, as certbot does for `accounts/`.
pub fn create_private_dir(folder: &Path) -> Result<(), AcmeError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder).map_err(AcmeError::io("create", folder))
}

/// The challenge files written for one order, removed when dropped.
struct TokenFiles {
    paths: Vec<PathBuf>,
}

impl TokenFiles {
    fn write(webroot: &Path, challenges: &[(String, String, String)]) -> Result<Self, AcmeError> {
        let folder = webroot.join(".well-known").join("acme-challenge");
        fs_err::create_dir_all(&folder).map_err(|error| AcmeError::Other(error.to_string()))?;
        // nginx's workers run as another user: whatever the umask, they must read their way in.
        for dir in [webroot.join(".well-known"), folder.clone()] {
            fs_err::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(AcmeError::io("open up the challenge folder", &dir))?;
        }
        let mut files = Self { paths: Vec::new() };
        for (_, token, key_authorization) in challenges {
            if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(AcmeError::Other(format!("the CA sent an unsafe challenge token `{token}`")));
            }
            let path = folder.join(token);
            // nginx's workers (another user) read it.
            crate::atomic::write_file(&path, key_authorization.as_bytes(), 0o644)
                .map_err(AcmeError::io("write the challenge", &path))?;
            files.paths.push(path);
        }
        Ok(files)
    }
}

impl Drop for TokenFiles {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = fs_err::remove_file(path);
        }
    }
}

/// Fetches the challenge as the CA will (plain HTTP, `Host: <name>`), through the edge.
async fn self_check(http01: &Http01, name: &str, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
    let port = http01.edge_http.port();
    let url = format!("http://{name}:{port}/.well-known/acme-challenge/{token}");
    let failed = |reason: String| AcmeError::SelfCheck { name: name.to_owned(), url: url.clone(), reason };
    let client = reqwest::Client::builder()
        .resolve(name, http01.edge_http)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| failed(error.to_string()))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|error| failed(format!("`{url}` could not be fetched from {}: {error}", http01.edge_http)))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(failed(format!("`{url}` answered {status} instead of the challenge")));
    }
    if body.trim() != key_authorization {
        return Err(failed(format!("`{url}` answered something other than the challenge that was written")));
    }
    Ok(())
}

/// Why the order became invalid: the challenges' errors, per name.
async fn validation_failure(order: &mut instant_acme::Order) -> AcmeError {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else { continue };
        let name = state.identifier().to_string();
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                return AcmeError::Validation { name, detail: describe_problem(problem) };
            }
        }
    }
    AcmeError::Acme { what: "the order became invalid".into(), detail: "the CA gave no reason".into() }
}

/// A CSR for `names` with an explicit subject (rcgen's default is "rcgen self signed cert").
fn certificate_request(names: &[String], key: &rcgen::KeyPair) -> Result<Vec<u8>, AcmeError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|error| AcmeError::Other(format!("invalid names for a certificate: {error}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = names.first() {
        params.distinguished_name.push(rcgen::DnType::CommonName, first.as_str());
    }
    let csr = params
        .serialize_request(key)
        .map_err(|error| AcmeError::Other(format!("failed to make the certificate request: {error}")))?;
    Ok(csr.der().to_vec())
}

/// certbot's split of the downloaded chain: `cert` is the first block, `chain` the rest.
pub fn split_chain(fullchain: &str) -> Result<(String, String), AcmeError> {
    let blocks: Vec<&str> = fullchain
        .split_inclusive("-----END CERTIFICATE-----")
        .map(str::trim)
        .filter(|block| block.starts_with("-----BEGIN CERTIFICATE-----"))
        .collect();
    let Some((leaf, rest)) = blocks.split_first() else {
        return Err(AcmeError::Other("the CA sent no certificate".into()));
    };
    let chain: String = rest.iter().flat_map(|block| [*block, "\n"]).collect();
    Ok((format!("{leaf}\n"), chain))
}

fn to_chrono(time: time::OffsetDateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(time.unix_timestamp(), time.nanosecond()).unwrap_or_default()
}

fn is_problem(error: &AcmeApiError, kind: &str) -> bool {
    matches!(error, AcmeApiError::Api(problem) if problem.r#type.as_deref() == Some(kind))
}

fn describe_problem(problem: &Problem) -> String {
    let mut text = problem.detail.clone().unwrap_or_else(|| "no detail".into());
    if let Some(kind) = &problem.r#type {
        let _ = write!(text, " ({})", kind.trim_start_matches("urn:ietf:params:acme:error:"));
    }
    for sub in &problem.subproblems {
        if let Some(detail) = &sub.detail {
            let _ = write!(text, "; {detail}");
        }
    }
    text
}

/// An instant-acme error as the operator reads it; a 429 names the limit and when to retry.
fn api_error(what: &str, error: &AcmeApiError, last_retry_after: &Mutex<Option<String>>) -> AcmeError {
    if let AcmeApiError::Api(problem) = error {
        if problem.r#type.as_deref() == Some(RATE_LIMITED) || problem.status == Some(429) {
            let retry_after = last_retry_after.lock().ok().and_then(|slot| slot.clone()).map(|value| {
                // Seconds or an HTTP date: say when, in UTC.
                value.parse::<i64>().map_or(value.clone(), |seconds| {
                    (chrono::Utc::now() + chrono::Duration::seconds(seconds))
                        .format("%Y-%m-%d %H:%M:%S UTC")
                        .to_string()
                })
            });
            return AcmeError::RateLimited {
                detail: problem.detail.clone().unwrap_or_else(|| "no detail".into()),
                retry_after,
            };
        }
        return AcmeError::Acme { what: what.to_owned(), detail: describe_problem(problem) };
    }
    AcmeError::Acme { what: what.to_owned(), detail: error.to_string() }
}

/// Where the edge's plain-HTTP listener is.
#[must_use]
pub fn edge_http(host: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_splits_as_certbot_does() {
        let block = |n: u8| format!("-----BEGIN CERTIFICATE-----\nAA{n}\n-----END CERTIFICATE-----");
        let fullchain = format!("{}\n{}\n\n{}\n", block(1), block(2), block(3));
        let (cert, chain) = split_chain(&fullchain).unwrap();
        assert_eq!(cert, format!("{}\n", block(1)));
        assert_eq!(chain, format!("{}\n{}\n", block(2), block(3)));
        assert!(split_chain("nothing").is_err());
    }

    #[test]
    fn accounts_are_stored_per_directory_host() {
        let path = account_path(Path::new("/etc/letsencrypt/accounts"), "https://127.0.0.1:14000/dir");
        assert_eq!(path, Path::new("/etc/letsencrypt/accounts/127.0.0.1:14000/masstockctl/account.json"));
        let path = account_path(Path::new("/a"), "https://acme-v02.api.letsencrypt.org/directory");
        assert_eq!(path, Path::new("/a/acme-v02.api.letsencrypt.org/masstockctl/account.json"));
    }

    #[test]
    fn a_rate_limit_names_the_limit_and_when_to_retry() {
        let problem = Problem {
            r#type: Some(RATE_LIMITED.into()),
            detail: Some("too many certificates (5) already issued for this exact set of identifiers".into()),
            status: Some(429),
            subproblems: Vec::new(),
        };
        let slot = Mutex::new(Some("Tue, 24 Nov 2026 12:00:00 GMT".to_owned()));
        let error = api_error("failed to place the order", &AcmeApiError::Api(problem), &slot);
        let message = error.to_string();
        assert!(message.contains("too many certificates (5)"), "{message}");
        assert!(message.contains("retry after Tue, 24 Nov 2026 12:00:00 GMT"), "{message}");
    }
}
