//! Result images on disk, under `UPLOADS_DIR`: `<execution id>/<prompt index>.<ext>`.
//!
//! A file is written to a temporary name in its final folder, flushed, then renamed over the
//! final name, and the folder is flushed: a reader (the API) sees the whole image or none, and a
//! crash leaves at worst a temporary file, never a truncated image under the final name. Two
//! workers that store the same prompt (a job that ran twice) write the same name; the last
//! rename wins and the database keeps one row.

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

/// Where a prompt's image goes, relative to the uploads folder (what the database stores).
#[must_use]
pub fn location(execution_id: Uuid, prompt_index: usize, mime_type: &str) -> String {
    format!("{execution_id}/{prompt_index}.{}", extension(mime_type))
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
    fs_err::create_dir_all(folder)?;
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
    async fn images_land_whole_under_their_final_name() {
        let uploads = tempfile::tempdir().unwrap();
        let id = Uuid::nil();
        let location = location(id, 3, "image/png");
        assert_eq!(location, "00000000-0000-0000-0000-000000000000/3.png");
        store(uploads.path(), &location, b"first".to_vec()).await.unwrap();
        let path = store(uploads.path(), &location, b"second".to_vec()).await.unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"second");
        let names: Vec<_> =
            fs_err::read_dir(path.parent().unwrap()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, ["3.png"], "no temporary file is left behind");
    }

    #[test]
    fn extensions_follow_the_content_type() {
        assert_eq!(extension("image/jpeg"), "jpg");
        assert_eq!(extension("image/png"), "png");
        assert_eq!(extension("image/unknown"), "png");
    }
}
