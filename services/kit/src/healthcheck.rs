//! `healthcheck --url URL` of our HTTP services (`masstock-api`, `masstock-web`): the container's
//! health check. Images have no shell and no wget, so the binary checks itself: one HTTP/1.0 GET,
//! healthy on a 2xx answer.
//!
//! The subcommand itself (its `--url` and the dispatch) is declared once, in
//! [`crate::cli::main_with_healthcheck`]: each service gives only its default URL.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Why the check failed, in words for `docker inspect`.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("`{0}` is not an http:// URL with a host")]
    Url(String),
    #[error("no answer from `{0}` within {1:?}")]
    Timeout(String, Duration),
    #[error("cannot reach `{address}`: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("the answer is not HTTP: `{0}`")]
    Malformed(String),
    #[error("status {0}")]
    Status(u16),
}

/// The `healthcheck --url URL` command: exit 0 on a 2xx within five seconds, otherwise 1 with the
/// reason on stderr (what `docker inspect` shows).
pub async fn command(url: &str) -> std::process::ExitCode {
    match check(url, Duration::from_secs(5)).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("unhealthy: {error}");
            std::process::ExitCode::from(1)
        }
    }
}

/// GETs `url` (`http://host:port/path`) and succeeds on a 2xx status.
pub async fn check(url: &str, timeout: Duration) -> Result<u16, CheckError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| CheckError::Url(url.to_owned()))?;
    let (authority, path) =
        rest.split_once('/').map_or((rest, "/".to_owned()), |(authority, path)| (authority, format!("/{path}")));
    if authority.is_empty() {
        return Err(CheckError::Url(url.to_owned()));
    }
    let address = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|source| CheckError::Connect { address: address.clone(), source })?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: masstock-healthcheck\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|source| CheckError::Connect { address: address.clone(), source })?;
        let mut head = vec![0; 64];
        let read =
            stream.read(&mut head).await.map_err(|source| CheckError::Connect { address: address.clone(), source })?;
        let line = String::from_utf8_lossy(&head[..read]).lines().next().unwrap_or_default().to_owned();
        let status: u16 = line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| CheckError::Malformed(line.clone()))?;
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(CheckError::Status(status))
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| CheckError::Timeout(address.clone(), timeout))?
}
