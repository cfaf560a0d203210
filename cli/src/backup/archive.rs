//! Tars through the engine's archive endpoint, for the backup components: one streaming tar
//! parser ([`TarParser`]) under both readers, and one writer.
//!
//! - **Reading** (`GET /containers/{id}/archive`, [`download`]): the engine's tar is read a chunk
//!   at a time and never held whole in memory. [`Copy::Whole`] passes every chunk to the sink
//!   (the volumes' snapshot is the tar itself); [`Copy::FileOnly`] writes only the bytes of the one
//!   file the path names (redis's RDB), and refuses a tar whose first entry is not a regular file
//!   or that holds anything after it. Either way the regular files and their bytes are counted on
//!   the way, and a stream cut in an entry is an error, not a smaller copy.
//! - **The parser** holds at most one header (and one pax header's records, at most 1 MiB) in
//!   memory. Headers are read as the `tar` crate's `Header` (entry types: ustar, GNU long names)
//!   with sizes in octal or GNU's base-256; pax `size` records (read by their lengths) override
//!   the next entry's size; each header's checksum is checked (signed or unsigned sums, as old
//!   tars wrote either).
//! - **Writing** (`PUT /containers/{id}/archive`, [`upload`]): a tar read from any `AsyncRead` is
//!   streamed to the engine as it arrives. A failed read of the source fails the request too, so
//!   the engine does not take a truncated tar for a whole one, and the call fails even when the
//!   engine accepted what came. [`file_header`] and [`padding`] make the entries of a tar written
//!   by hand (redis's RDB, which must state its size before its bytes). Uploads are not bounded by
//!   the client's request timeout (a large volume takes longer than two minutes to unpack).

use std::ops::Range;

use bollard::query_parameters::{DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::throwaway::LONG_REQUEST;

const BLOCK: u64 = 512;
const BLOCK_BYTES: usize = 512;
/// The largest pax extended header kept in memory (a real one is a few hundred bytes).
const PAX_LIMIT: u64 = 1024 * 1024;

/// What of the engine's tar reaches the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// The tar as it is.
    Whole,
    /// Only the bytes of the one regular file it holds.
    FileOnly,
}

/// Why reading a tar from the engine failed; each component words it with its own names.
#[derive(Debug)]
pub enum ReadError {
    /// The engine's stream failed.
    Engine(bollard::errors::Error),
    /// What came is not the tar expected: why.
    NotTar(String),
    /// Writing to the sink failed.
    Sink(std::io::Error),
}

/// Why writing a tar into a container failed.
#[derive(Debug)]
pub enum WriteError {
    /// Reading the tar to send failed.
    Source(std::io::Error),
    /// The engine refused or did not unpack it.
    Engine(bollard::errors::Error),
}

/// The regular files a tar held and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counted {
    pub files: u64,
    pub bytes: u64,
}

impl Counted {
    /// As the volumes' figures: `files` and `bytes`.
    #[must_use]
    pub fn figures(self) -> super::Figures {
        super::Figures::from([("files".to_owned(), self.files), ("bytes".to_owned(), self.bytes)])
    }
}

/// Streams the engine's tar of `path` in `container` (running or not) into `sink` as `copy`
/// says, counting its files; `activity` hears the bytes of the file copied with
/// [`Copy::FileOnly`].
pub async fn download(
    docker: &Docker,
    container: &str,
    path: &str,
    copy: Copy,
    sink: &mut (dyn AsyncWrite + Unpin + Send),
    activity: Option<&dyn crate::report::Activity>,
) -> Result<Counted, ReadError> {
    let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
    let mut stream = docker.download_from_container(container, Some(options));
    let mut parser = TarParser::default();
    let mut entries = 0_u32;
    let mut copied = 0_u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReadError::Engine)?;
        let pieces = parser.feed(&chunk).map_err(ReadError::NotTar)?;
        if copy == Copy::Whole {
            sink.write_all(&chunk).await.map_err(ReadError::Sink)?;
            continue;
        }
        for piece in pieces {
            match piece {
                Piece::Entry { kind } => {
                    entries += 1;
                    if entries > 1 {
                        return Err(ReadError::NotTar("it holds more than the file".to_owned()));
                    }
                    if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
                        return Err(ReadError::NotTar(format!("its first entry is a {kind:?}, not a file")));
                    }
                }
                Piece::Data(range) => {
                    sink.write_all(&chunk[range.clone()]).await.map_err(ReadError::Sink)?;
                    copied += range.len() as u64;
                    if let Some(activity) = activity {
                        activity.bytes(copied, parser.counted().bytes);
                    }
                }
            }
        }
    }
    parser.finish().map_err(ReadError::NotTar)?;
    if copy == Copy::FileOnly && entries == 0 {
        return Err(ReadError::NotTar("it holds no file".to_owned()));
    }
    sink.flush().await.map_err(ReadError::Sink)?;
    Ok(parser.counted())
}

/// Has the engine unpack the tar `source` at `path` of the (created, not started) `container`,
/// as it arrives.
pub async fn upload(
    docker: &Docker,
    container: &str,
    path: &str,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), WriteError> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let docker = docker.clone().with_timeout(LONG_REQUEST);
    let options = UploadToContainerOptionsBuilder::default().path(path).build();
    let upload = docker.upload_to_container(container, Some(options), bollard::body_try_stream(body));
    let pump = async move {
        let mut buffer = vec![0_u8; 256 * 1024];
        loop {
            match source.read(&mut buffer).await {
                Ok(0) => return Ok(()),
                Ok(read) => {
                    if sender.send(Ok(Bytes::copy_from_slice(&buffer[..read]))).await.is_err() {
                        // The engine stopped reading: the upload's own error says why.
                        return Ok(());
                    }
                }
                Err(error) => {
                    let _ = sender.send(Err(std::io::Error::new(error.kind(), "the snapshot could not be read"))).await;
                    return Err(error);
                }
            }
        }
    };
    let (uploaded, pumped): (Result<(), bollard::errors::Error>, std::io::Result<()>) = tokio::join!(upload, pump);
    pumped.map_err(WriteError::Source)?;
    uploaded.map_err(WriteError::Engine)
}

/// A GNU tar header for the regular file `name` (`size` bytes, `mode`, owned by `uid` and its
/// group, root when `None`), dated now.
pub fn file_header(name: &str, size: u64, mode: u32, uid: Option<u32>) -> std::io::Result<Bytes> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(mode);
    let owner = u64::from(uid.unwrap_or(0));
    header.set_uid(owner);
    header.set_gid(owner);
    header.set_mtime(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs()),
    );
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(Bytes::copy_from_slice(header.as_bytes()))
}

/// Zeros up to the next 512-byte boundary after `size` bytes.
#[must_use]
pub fn padding(size: u64) -> Bytes {
    let rest = usize::try_from(size % BLOCK).unwrap_or(0);
    Bytes::from(vec![0_u8; if rest == 0 { 0 } else { BLOCK_BYTES - rest }])
}

/// The two zero blocks that end a tar.
#[must_use]
pub fn end_of_archive() -> Bytes {
    Bytes::from(vec![0_u8; 2 * BLOCK_BYTES])
}

/// What a chunk fed to [`TarParser`] held, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The header of an entry (not of an extension header: pax, GNU long names).
    Entry { kind: tar::EntryType },
    /// Bytes of a regular file's data, as a range of the chunk.
    Data(Range<usize>),
}

/// A tar stream parsed chunk by chunk: which entries it holds, where the regular files' bytes
/// are, and how many files and bytes.
#[derive(Debug, Default)]
pub struct TarParser {
    header: Vec<u8>,
    data_left: u64,
    padding_left: u64,
    /// Whether the data being read is a regular file's.
    in_file: bool,
    pax: Option<Vec<u8>>,
    next_size: Option<u64>,
    counted: Counted,
}

impl TarParser {
    /// Reads `chunk`, the stream's next bytes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Piece>, String> {
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < chunk.len() {
            let rest = chunk.len() - at;
            if self.data_left > 0 {
                let take = usize::try_from(self.data_left).unwrap_or(usize::MAX).min(rest);
                if let Some(pax) = &mut self.pax {
                    pax.extend_from_slice(&chunk[at..at + take]);
                }
                if self.in_file {
                    pieces.push(Piece::Data(at..at + take));
                }
                self.data_left -= take as u64;
                at += take;
                if self.data_left == 0 {
                    if let Some(pax) = self.pax.take() {
                        self.next_size = pax_size(&pax)?.or(self.next_size);
                    }
                }
                continue;
            }
            if self.padding_left > 0 {
                let take = usize::try_from(self.padding_left).unwrap_or(usize::MAX).min(rest);
                self.padding_left -= take as u64;
                at += take;
                continue;
            }
            let take = (BLOCK_BYTES - self.header.len()).min(rest);
            self.header.extend_from_slice(&chunk[at..at + take]);
            at += take;
            if self.header.len() == BLOCK_BYTES {
                let header = std::mem::take(&mut self.header);
                if let Some(kind) = self.entry(&header)? {
                    pieces.push(Piece::Entry { kind });
                }
            }
        }
        Ok(pieces)
    }

    /// Reads one header block; the entry's kind unless it is an extension header or padding.
    fn entry(&mut self, block: &[u8]) -> Result<Option<tar::EntryType>, String> {
        if block.iter().all(|byte| *byte == 0) {
            return Ok(None);
        }
        let header = tar::Header::from_byte_slice(block);
        let recorded = number(&header.as_old().cksum).ok_or("a header has no checksum")?;
        let unsigned: u64 = block
            .iter()
            .enumerate()
            .map(|(index, byte)| if (148..156).contains(&index) { 32 } else { u64::from(*byte) })
            .sum();
        #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
        let signed: i64 = block
            .iter()
            .enumerate()
            .map(|(index, byte)| if (148..156).contains(&index) { 32 } else { i64::from(*byte as i8) })
            .sum();
        #[allow(clippy::cast_sign_loss)]
        if recorded != unsigned && recorded != signed as u64 {
            return Err("a header's checksum does not match".to_owned());
        }
        let size = number(&header.as_old().size).ok_or("a header has no size")?;
        let kind = header.entry_type();
        let extension = matches!(
            kind,
            tar::EntryType::XHeader
                | tar::EntryType::XGlobalHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        );
        let size = if extension { size } else { self.next_size.take().unwrap_or(size) };
        self.in_file = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous);
        if self.in_file {
            self.counted.files += 1;
            self.counted.bytes += size;
        }
        if kind == tar::EntryType::XHeader {
            if size > PAX_LIMIT {
                return Err(format!("a pax header of {size} bytes"));
            }
            self.pax = Some(Vec::new());
        }
        self.data_left = size;
        self.padding_left = (BLOCK - size % BLOCK) % BLOCK;
        if size == 0 {
            if let Some(pax) = self.pax.take() {
                self.next_size = pax_size(&pax)?;
            }
        }
        Ok((!extension).then_some(kind))
    }

    /// Checks that the stream did not end in an entry.
    pub fn finish(&self) -> Result<(), String> {
        if self.header.is_empty() && self.data_left == 0 && self.padding_left == 0 {
            Ok(())
        } else {
            Err("it ends in the middle of an entry".to_owned())
        }
    }

    /// The regular files so far and their bytes.
    #[must_use]
    pub fn counted(&self) -> Counted {
        self.counted
    }
}

/// A numeric header field: octal digits (NUL- or space-terminated, none for zero), or GNU's
/// base-256. The `tar` crate's own reading refuses an empty field, which its `Builder` writes.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|byte| byte & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*byte))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|character: char| character == '\0' || character == ' ');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// The `size` record of a pax extended header (`<length> size=<decimal>\n` records). Read by
/// each record's length, not by lines as `tar::PaxExtensions` does: a path may hold a newline.
fn pax_size(records: &[u8]) -> Result<Option<u64>, String> {
    let malformed = || "a malformed pax header".to_owned();
    let mut rest = records;
    let mut size = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|byte| *byte == b' ').ok_or_else(malformed)?;
        let length: usize =
            std::str::from_utf8(&rest[..space]).ok().and_then(|text| text.parse().ok()).ok_or_else(malformed)?;
        if length <= space || length > rest.len() {
            return Err(malformed());
        }
        let record = &rest[space + 1..length];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"size=") {
            size = Some(std::str::from_utf8(value).ok().and_then(|text| text.parse().ok()).ok_or_else(malformed)?);
        }
        rest = &rest[length..];
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_reads_gnu_and_pax_archives_in_any_chunks() {
        let mut builder = tar::Builder::new(Vec::new());
        let long = format!("uploads/{}/file", "x".repeat(150));
        for (format, name, size) in
            [("gnu", long.as_str(), 700_usize), ("ustar", "uploads/small", 3), ("gnu", "uploads/empty", 0)]
        {
            let mut header = if format == "gnu" { tar::Header::new_gnu() } else { tar::Header::new_ustar() };
            header.set_size(size as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, vec![7_u8; size].as_slice()).unwrap();
        }
        builder.append_pax_extensions([("size", b"5".as_slice()), ("comment", b"a pax header".as_slice())]).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(5);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, "uploads/pax", b"12345".as_slice()).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        builder.append_data(&mut header, "uploads/folder", std::io::empty()).unwrap();
        let archive = builder.into_inner().unwrap();
        for chunk in [1, 7, 512, 100_000] {
            let mut parser = TarParser::default();
            let mut data = Vec::new();
            let mut kinds = Vec::new();
            for piece in archive.chunks(chunk) {
                for found in parser.feed(piece).unwrap() {
                    match found {
                        Piece::Data(range) => data.extend_from_slice(&piece[range]),
                        Piece::Entry { kind } => kinds.push(kind),
                    }
                }
            }
            parser.finish().unwrap();
            assert_eq!(
                parser.counted().figures(),
                super::super::Figures::from([("files".to_owned(), 4), ("bytes".to_owned(), 708)])
            );
            // The files' bytes, and nothing of the headers or the padding.
            assert_eq!(data, [vec![7_u8; 703], b"12345".to_vec()].concat());
            assert_eq!(kinds.len(), 5, "{kinds:?}");
            assert_eq!(kinds.last(), Some(&tar::EntryType::Directory));
        }
        let mut parser = TarParser::default();
        parser.feed(&archive[..archive.len() - 2000]).unwrap();
        assert!(parser.finish().is_err(), "a stream cut in an entry is refused");
        let mut garbage = archive.clone();
        garbage[10] ^= 1;
        assert!(TarParser::default().feed(&garbage).is_err(), "a corrupt header is refused");
    }
}
