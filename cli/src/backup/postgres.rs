//! The `postgres` component's capture, restore and drill (see `crate::backup`).

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Figures, Scratch, Target};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not written yet")]
    Unwritten,
}

impl Error {
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        Vec::new()
    }
}

pub async fn capture(_target: &Target<'_>, _sink: &mut (dyn AsyncWrite + Unpin + Send)) -> Result<Figures, Error> {
    Err(Error::Unwritten)
}

pub async fn put_back(_target: &Target<'_>, _source: &mut (dyn AsyncRead + Unpin + Send)) -> Result<(), Error> {
    Err(Error::Unwritten)
}

pub async fn measure(_target: &Target<'_>) -> Result<Figures, Error> {
    Err(Error::Unwritten)
}

pub async fn drill(
    _target: &Target<'_>,
    _scratch: &mut Scratch,
    _source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<Figures, Error> {
    Err(Error::Unwritten)
}
