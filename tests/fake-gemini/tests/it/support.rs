//! Requests to the fake as the worker sends them, and checks of Google's formats and of PNGs.

use std::time::Duration;

use masstock_fake_gemini::{FakeGemini, Settings};
use serde_json::{json, Value};

pub const MODEL: &str = "gemini-2.5-flash-image";
pub const API_KEY: &str = "test-api-key";

/// A fake expecting [`API_KEY`].
pub fn start() -> FakeGemini {
    start_with(Settings::default().with_api_key(API_KEY))
}

pub fn start_with(settings: Settings) -> FakeGemini {
    FakeGemini::start(settings).expect("the fake starts on a free port")
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("an HTTP client")
}

pub fn generate_url(gemini: &FakeGemini) -> String {
    format!("{}/v1beta/models/{MODEL}:generateContent", gemini.url())
}

/// The body the worker sends for one prompt.
pub fn request_body(prompt: &str) -> Value {
    json!({
        "contents": [{ "role": "user", "parts": [{ "text": prompt }] }],
        "generationConfig": { "responseModalities": ["TEXT", "IMAGE"], "imageConfig": { "aspectRatio": "1:1" } },
    })
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
}

pub fn post(url: &str, api_key: Option<&str>, body: &Value) -> Answer {
    let mut request = client().post(url).json(body);
    if let Some(api_key) = api_key {
        request = request.header("x-goog-api-key", api_key);
    }
    let response = request.send().expect("the fake answers");
    let status = response.status().as_u16();
    let text = response.text().expect("a body");
    let json = serde_json::from_str(&text).unwrap_or_else(|error| panic!("a JSON body ({error}): {text}"));
    Answer { status, json }
}

/// One prompt, with the right key.
pub fn generate(gemini: &FakeGemini, prompt: &str) -> Answer {
    post(&generate_url(gemini), Some(API_KEY), &request_body(prompt))
}

/// Asserts a Google error: `{"error": {"code", "message", "status"}}` with the status line matching.
pub fn assert_google_error(answer: &Answer, code: u16, status: &str) {
    assert_eq!(answer.status, code, "{}", answer.json);
    let error = &answer.json["error"];
    assert_eq!(error["code"], code, "{}", answer.json);
    assert_eq!(error["status"], status, "{}", answer.json);
    assert!(error["message"].as_str().is_some_and(|message| !message.is_empty()), "{}", answer.json);
    assert_eq!(answer.json.as_object().unwrap().len(), 1, "only `error` at the top: {}", answer.json);
}

/// The detail of that `@type` (`type.googleapis.com/google.rpc.RetryInfo`, …).
pub fn detail<'answer>(answer: &'answer Answer, kind: &str) -> &'answer Value {
    answer.json["error"]["details"]
        .as_array()
        .and_then(|details| {
            details.iter().find(|detail| detail["@type"] == format!("type.googleapis.com/google.rpc.{kind}"))
        })
        .unwrap_or_else(|| panic!("a `{kind}` detail: {}", answer.json))
}

/// The PNG in a 200 answer's `inlineData`, decoded.
pub fn inline_png(answer: &Answer) -> Vec<u8> {
    let parts = answer.json["candidates"][0]["content"]["parts"].as_array().expect("parts");
    let inline = parts.iter().find_map(|part| part.get("inlineData")).expect("an inlineData part");
    assert_eq!(inline["mimeType"], "image/png");
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, inline["data"].as_str().expect("data"))
        .expect("base64 data")
}

/// CRC-32 bit by bit: a different computation from the fake's table.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0_u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Checks a PNG through and through (signature, chunks and their CRCs, IHDR, the zlib stream of
/// stored blocks and its Adler-32, the scanlines) and returns its width and height.
pub fn check_png(png: &[u8]) -> (u32, u32) {
    assert_eq!(png[..8], [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'], "the PNG signature");
    let mut chunks = Vec::new();
    let mut rest = &png[8..];
    while !rest.is_empty() {
        let length = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = rest[4..8].try_into().unwrap();
        let data = &rest[8..8 + length];
        let crc = u32::from_be_bytes(rest[8 + length..12 + length].try_into().unwrap());
        assert_eq!(crc, crc32(&rest[4..8 + length]), "the CRC of `{}`", String::from_utf8_lossy(&kind));
        chunks.push((kind, data));
        rest = &rest[12 + length..];
    }
    assert_eq!(&chunks[0].0, b"IHDR", "IHDR comes first");
    assert_eq!(&chunks.last().unwrap().0, b"IEND", "IEND comes last");
    let header = chunks[0].1;
    assert_eq!(header.len(), 13);
    let width = u32::from_be_bytes(header[..4].try_into().unwrap());
    let height = u32::from_be_bytes(header[4..8].try_into().unwrap());
    assert_eq!(header[8..], [8, 2, 0, 0, 0], "8-bit truecolour, deflate, no interlace");

    let zlib: Vec<u8> = chunks.iter().filter(|(kind, _)| kind == b"IDAT").flat_map(|(_, data)| data.to_vec()).collect();
    assert_eq!((u16::from(zlib[0]) << 8 | u16::from(zlib[1])) % 31, 0, "the zlib header check");
    assert_eq!(zlib[0] & 0x0F, 8, "deflate");
    let mut inflated = Vec::new();
    let mut position = 2;
    loop {
        let block_header = zlib[position];
        assert_eq!(block_header & 0b110, 0, "stored blocks");
        let length = u16::from_le_bytes([zlib[position + 1], zlib[position + 2]]);
        let complement = u16::from_le_bytes([zlib[position + 3], zlib[position + 4]]);
        assert_eq!(length, !complement);
        inflated.extend_from_slice(&zlib[position + 5..position + 5 + usize::from(length)]);
        position += 5 + usize::from(length);
        if block_header & 1 == 1 {
            break;
        }
    }
    let (mut low, mut high) = (1_u32, 0_u32);
    for byte in &inflated {
        low = (low + u32::from(*byte)) % 65_521;
        high = (high + low) % 65_521;
    }
    assert_eq!(zlib[position..], ((high << 16) | low).to_be_bytes(), "the Adler-32");
    let row_length = width as usize * 3 + 1;
    assert_eq!(inflated.len(), row_length * height as usize, "one scanline per row");
    assert!(inflated.chunks(row_length).all(|row| row[0] <= 4), "valid filter types");
    (width, height)
}
