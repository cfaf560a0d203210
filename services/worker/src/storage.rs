//! Result images on disk, under `UPLOADS_DIR`: `<execution id>/<prompt index>-<nonce>.<ext>`.
//!
//! A file is written to a temporary name in its final folder, flushed, then renamed to its final
//! name, and the folder is flushed: a reader (the API) sees the whole image or none, and a crash
//! leaves at worst a temporary file, never a truncated image under a final name. Each write has
//! its own name: when two workers store the same prompt (a job that ran twice), the database
//! keeps the first row, which names the first file, and the loser removes its own.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// The file extension for an image's content type.
#[must_use]
pub fn extension(mime_type: &str) -> &'static str {
    match mime_type {
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        _ => "png",
    }
}

/// A new name for a prompt's image, relative to the uploads folder (what the database stores).
#[must_use]
pub fn location(execution_id: Uuid, prompt_index: usize, mime_type: &str) -> String {
    let nonce = Uuid::new_v4().simple().to_string();
    format!("{execution_id}/{prompt_index}-{}.{}", &nonce[..12], extension(mime_type))
}

/// Removes an image no row names; a failure only leaves a file behind, so it is logged.
pub async fn remove(uploads_dir: &Path, location: &str) {
    let path = uploads_dir.join(location);
    let removed = tokio::task::spawn_blocking(move || fs_err::remove_file(path)).await;
    if let Ok(Err(error)) = removed {
        tracing::warn!(%error, "cannot remove an image that no result names");
    }
}

/// Writes `bytes` at `uploads_dir/location`, atomically.
pub async fn store(uploads_dir: &Path, location: &str, bytes: Vec<u8>) -> std::io::Result<PathBuf> {
    let path = uploads_dir.join(location);
    tokio::task::spawn_blocking(move || {
        write_atomically(&path, &bytes)?;
        Ok(path)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = path.parent().ok_or_else(|| std::io::Error::other(format!("`{}` has no folder", path.display())))?;
    if !folder.is_dir() {
        fs_err::create_dir_all(folder)?;
        // The new folder's own entry is durable once its parent is.
        if let Some(parent) = folder.parent() {
            fs_err::File::open(parent)?.sync_all()?;
        }
    }
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = folder.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = fs_err::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs_err::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs_err::remove_file(&temporary);
    }
    written?;
    // The rename is durable once the folder's entry is.
    fs_err::File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn images_land_whole_under_names_of_their_own() {
        let uploads = tempfile::tempdir().unwrap();
        let id = Uuid::nil();
        let first = location(id, 3, "image/png");
        let second = location(id, 3, "image/png");
        assert!(first.starts_with("00000000-0000-0000-0000-000000000000/3-"), "{first}");
        assert_eq!(Path::new(&first).extension(), Some("png".as_ref()));
        assert_ne!(first, second, "each write has its own name");
        store(uploads.path(), &first, b"first".to_vec()).await.unwrap();
        let path = store(uploads.path(), &second, b"second".to_vec()).await.unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"second");
        remove(uploads.path(), &first).await;
        let names: Vec<_> =
            fs_err::read_dir(path.parent().unwrap()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, [path.file_name().unwrap()], "no temporary file is left behind");
    }

    #[test]
    fn extensions_follow_the_content_type() {
        assert_eq!(extension("image/jpeg"), "jpg");
        assert_eq!(extension("image/png"), "png");
        assert_eq!(extension("image/unknown"), "png");
    }
}
