//! A tiny PNG encoder (truecolour, 8 bits, zlib stored blocks) and the picture drawn for a prompt.

/// The eight bytes every PNG starts with.
pub(crate) const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// The long side of the images the fake draws.
pub(crate) const IMAGE_LONG_SIDE: u32 = 64;

/// The side of the checkerboard's squares.
const SQUARE_SIDE: u32 = 8;

/// CRC-32 (ISO-HDLC, as PNG uses it), one entry per byte value.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0_u32; 256];
    let mut index = 0_u32;
    while index < 256 {
        let mut crc = index;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { 0xEDB8_8320 ^ (crc >> 1) } else { crc >> 1 };
            bit += 1;
        }
        table[index as usize] = crc;
        index += 1;
    }
    table
};

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for part in parts {
        for byte in *part {
            crc = CRC_TABLE[((crc ^ u32::from(*byte)) & 0xFF) as usize] ^ (crc >> 8);
        }
    }
    crc ^ 0xFFFF_FFFF
}

fn adler32(bytes: &[u8]) -> u32 {
    const MODULUS: u32 = 65_521;
    let (mut low, mut high) = (1_u32, 0_u32);
    for byte in bytes {
        low = (low + u32::from(*byte)) % MODULUS;
        high = (high + low) % MODULUS;
    }
    (high << 16) | low
}

/// A zlib stream of stored (uncompressed) deflate blocks: valid, if not small.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    const MAX_STORED_BLOCK: usize = 65_535;
    let mut stream = Vec::with_capacity(data.len() + data.len() / MAX_STORED_BLOCK * 5 + 11);
    // CMF: deflate with a 32 KiB window; FLG: no dictionary, fastest, and (CMF*256 + FLG) % 31 == 0.
    stream.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(MAX_STORED_BLOCK).peekable();
    if blocks.peek().is_none() {
        stream.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        let is_final = blocks.peek().is_none();
        let length = u16::try_from(block.len()).expect("stored blocks hold at most 65535 bytes");
        stream.push(u8::from(is_final));
        stream.extend_from_slice(&length.to_le_bytes());
        stream.extend_from_slice(&(!length).to_le_bytes());
        stream.extend_from_slice(block);
    }
    stream.extend_from_slice(&adler32(data).to_be_bytes());
    stream
}

fn write_chunk(png: &mut Vec<u8>, kind: [u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).expect("a PNG chunk holds less than 4 GiB");
    png.extend_from_slice(&length.to_be_bytes());
    png.extend_from_slice(&kind);
    png.extend_from_slice(data);
    png.extend_from_slice(&crc32(&[&kind, data]).to_be_bytes());
}

/// Encodes `rgb` (rows of `width` pixels, three bytes each, top to bottom) as a PNG.
pub(crate) fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let row_length = width as usize * 3;
    assert_eq!(rgb.len(), row_length * height as usize, "`rgb` must hold `width` × `height` pixels");
    // Each scanline starts with its filter type: 0, none.
    let mut scanlines = Vec::with_capacity((row_length + 1) * height as usize);
    for row in rgb.chunks(row_length.max(1)).take(height as usize) {
        scanlines.push(0);
        scanlines.extend_from_slice(row);
    }

    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (truecolour), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);

    let image_data = zlib_stored(&scanlines);
    let mut png = Vec::with_capacity(PNG_SIGNATURE.len() + 3 * 12 + header.len() + image_data.len());
    png.extend_from_slice(&PNG_SIGNATURE);
    write_chunk(&mut png, *b"IHDR", &header);
    write_chunk(&mut png, *b"IDAT", &image_data);
    write_chunk(&mut png, *b"IEND", &[]);
    png
}

/// `png` with `bytes` of padding in a private ancillary chunk (`paDd`) before `IEND`: still a
/// valid PNG of the same picture, which decoders skip, only larger.
pub(crate) fn padded(png: &[u8], bytes: usize) -> Vec<u8> {
    const IEND_LENGTH: usize = 12;
    let (body, end) = png.split_at(png.len() - IEND_LENGTH);
    let mut padded = Vec::with_capacity(png.len() + bytes + 12);
    padded.extend_from_slice(body);
    write_chunk(&mut padded, *b"paDd", &vec![0; bytes]);
    padded.extend_from_slice(end);
    padded
}

/// 64-bit FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The image's size for an aspect ratio `W:H`: the long side is [`IMAGE_LONG_SIDE`].
pub(crate) fn dimensions(aspect_width: u32, aspect_height: u32) -> (u32, u32) {
    let scaled = |short: u32, long: u32| ((IMAGE_LONG_SIDE * short + long / 2) / long).max(1);
    if aspect_width >= aspect_height {
        (IMAGE_LONG_SIDE, scaled(aspect_height, aspect_width))
    } else {
        (scaled(aspect_width, aspect_height), IMAGE_LONG_SIDE)
    }
}

/// A checkerboard in two colours taken from the prompt's hash: the same prompt always gives the
/// same PNG, different prompts (almost surely) different ones.
pub(crate) fn image_for_prompt(prompt: &str, width: u32, height: u32) -> Vec<u8> {
    let hash = fnv1a(prompt.as_bytes()).to_be_bytes();
    let colours = [[hash[0], hash[1], hash[2]], [hash[3], hash[4], hash[5]]];
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let colour = colours[((x / SQUARE_SIDE + y / SQUARE_SIDE) % 2) as usize];
            rgb.extend_from_slice(&colour);
        }
    }
    encode_rgb(width, height, &rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_goes_in_its_own_chunk_before_the_end() {
        let png = image_for_prompt("x", 4, 4);
        let padded = padded(&png, 1000);
        assert_eq!(padded.len(), png.len() + 1000 + 12);
        assert_eq!(&padded[..png.len() - 12], &png[..png.len() - 12]);
        assert_eq!(&padded[padded.len() - 12..], &png[png.len() - 12..], "IEND stays last");
        assert_eq!(&padded[png.len() - 12 + 4..png.len() - 12 + 8], b"paDd");
    }

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"IEND"]), 0xAE42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn an_image_is_a_png_of_the_size_asked() {
        let png = image_for_prompt("a red bicycle", 64, 36);
        assert_eq!(png[..8], PNG_SIGNATURE);
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 64);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 36);
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
    }

    #[test]
    fn different_prompts_draw_different_images() {
        assert_eq!(image_for_prompt("a cat", 64, 64), image_for_prompt("a cat", 64, 64));
        assert_ne!(image_for_prompt("a cat", 64, 64), image_for_prompt("a dog", 64, 64));
    }

    #[test]
    fn large_images_span_several_stored_blocks() {
        let stream = zlib_stored(&vec![7; 150_000]);
        // Header, three blocks of five bytes' framing each, Adler-32.
        assert_eq!(stream.len(), 2 + 150_000 + 3 * 5 + 4);
        assert_eq!(zlib_stored(&[]), [0x78, 0x01, 1, 0, 0, 0xFF, 0xFF, 0, 0, 0, 1]);
    }

    #[test]
    fn aspect_ratios_keep_the_long_side() {
        assert_eq!(dimensions(1, 1), (64, 64));
        assert_eq!(dimensions(16, 9), (64, 36));
        assert_eq!(dimensions(9, 16), (36, 64));
        assert_eq!(dimensions(21, 9), (64, 27));
    }
}
