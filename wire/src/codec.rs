//! The two encodings of one set of frame types: flat JSON text and bincode-compatible
//! binary. This is the only file that names `bincode`.

use std::borrow::Cow;

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorCode, WireError};
use crate::validate::Validator;

/// Protocol version carried in `welcome` and in the subprotocol names.
pub const PROTOCOL_VERSION: &str = "speedy.v1";

/// Largest allocation a binary frame may ask the decoder for.
const BINARY_DECODE_LIMIT: usize = 64 * 1024;

/// The bincode configuration of the binary encoding: varint integers, little endian.
fn binary_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<BINARY_DECODE_LIMIT>()
}

/// How frames travel on a connection, chosen by the WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON text frames, `{"type": "...", ...}` (subprotocol `speedy.v1.json`).
    Json,
    /// Binary frames, bincode 2 standard config over the serde types (`speedy.v1.bin`).
    Binary,
}

impl Encoding {
    /// The WebSocket subprotocol that selects this encoding.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => "speedy.v1.json",
            Encoding::Binary => "speedy.v1.bin",
        }
    }

    /// The encoding a subprotocol selects.
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        match name.trim() {
            "speedy.v1.json" => Some(Encoding::Json),
            "speedy.v1.bin" => Some(Encoding::Binary),
            _ => None,
        }
    }
}

/// A protocol enum ([`crate::ClientMessage`] or [`crate::ServerMessage`]).
pub trait Frame: Sized + Serialize + DeserializeOwned {
    /// This frame's type name.
    fn type_name(&self) -> &'static str;
    /// Every type name of this enum.
    fn types() -> &'static [&'static str];
    /// Decodes the payload of type `tag` from a whole JSON frame; none for an unknown tag.
    fn from_json_payload(tag: &str, bytes: &[u8]) -> Option<serde_json::Result<Self>>;
    /// Writes the payload as a JSON object.
    fn write_json_payload(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    /// Checks the payload against limits and catalog.
    fn validate(&self, v: &Validator) -> Result<(), WireError>;
}

/// Decodes and validates one frame.
pub fn decode<F: Frame>(encoding: Encoding, bytes: &[u8], v: &Validator) -> Result<F, WireError> {
    if bytes.len() > v.limits.max_frame_bytes {
        return Err(WireError::new(
            ErrorCode::FrameTooLarge,
            format!(
                "{} bytes is over the limit of {}",
                bytes.len(),
                v.limits.max_frame_bytes
            ),
        ));
    }
    let frame: F = match encoding {
        Encoding::Json => decode_json(bytes)?,
        Encoding::Binary => decode_binary(bytes)?,
    };
    frame.validate(v)?;
    Ok(frame)
}

/// The reference an error about a refused app frame echoes: its `client_ref`, or a
/// `pay` frame's idempotency key, when the frame can be read that far (a frame that
/// failed validation, not one that is not a frame at all) and the reference is at most
/// 64 bytes.
pub fn echo_ref(encoding: Encoding, bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Refs<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        client_ref: Option<Cow<'a, str>>,
        #[serde(borrow)]
        idempotency_key: Option<Cow<'a, str>>,
    }
    let found = match encoding {
        Encoding::Json => {
            let refs: Refs<'_> = serde_json::from_slice(bytes).ok()?;
            if refs.kind.as_deref() == Some("pay") {
                refs.idempotency_key.map(Cow::into_owned)
            } else {
                refs.client_ref.map(Cow::into_owned)
            }
        }
        Encoding::Binary => decode_binary::<crate::ClientMessage>(bytes)
            .ok()?
            .client_ref()
            .map(str::to_owned),
    };
    found.filter(|r| !r.is_empty() && r.len() <= 64)
}

/// Encodes one frame.
pub fn encode<F: Frame>(encoding: Encoding, frame: &F) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_into(encoding, frame, &mut out);
    out
}

/// Encodes one frame, appending to `out`.
pub fn encode_into<F: Frame>(encoding: Encoding, frame: &F, out: &mut Vec<u8>) {
    match encoding {
        Encoding::Json => {
            out.extend_from_slice(b"{\"type\":\"");
            out.extend_from_slice(frame.type_name().as_bytes());
            out.push(b'"');
            let start = out.len();
            // expect: serialising to a Vec cannot fail: no I/O, and no map has non-string keys.
            frame
                .write_json_payload(out)
                .expect("frames serialise to JSON");
            if &out[start..] == b"{}" {
                out.truncate(start);
                out.push(b'}');
            } else {
                out[start] = b',';
            }
        }
        Encoding::Binary => {
            // expect: every frame type has a known size and shape, which is all bincode needs.
            bincode::serde::encode_into_std_write(frame, out, bincode::config::standard())
                .expect("frames serialise to bincode");
        }
    }
}

/// Encodes one frame as a JSON string.
pub fn encode_json<F: Frame>(frame: &F) -> String {
    // expect: the JSON encoder writes only UTF-8.
    String::from_utf8(encode(Encoding::Json, frame)).expect("JSON is UTF-8")
}

/// Encodes any serde value in the binary encoding (storage keeps its records this way).
pub fn encode_value<T: Serialize>(value: &T) -> Vec<u8> {
    // expect: only sized, shaped serde types are stored, which is all bincode needs.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("value serialises")
}

/// Decodes a value written by [`encode_value`]; trailing bytes are an error.
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|e| WireError::new(ErrorCode::BadFrame, e.to_string()))?;
    if read != bytes.len() {
        return Err(WireError::new(
            ErrorCode::BadFrame,
            "trailing bytes after the value",
        ));
    }
    Ok(value)
}

/// Just the `type` of a JSON frame; other fields are skipped unparsed.
#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
}

fn decode_json<F: Frame>(bytes: &[u8]) -> Result<F, WireError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(classify_json(bytes, None, "a frame must be a JSON object"));
    }
    if let Some(kind) = leading_tag(bytes) {
        // The usual shape, `{"type":"name",...`: no separate pass to find the tag.
        if let Some(decoded) = F::from_json_payload(kind, bytes) {
            return decoded.map_err(|e| classify_json(bytes, Some(&e), ""));
        }
    }
    let tag: Tag<'_> = serde_json::from_slice(bytes).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            // The tag struct has one field: any data error is about `type`.
            WireError::new(ErrorCode::UnknownType, format!("`type`: {e}"))
        } else {
            classify_json(bytes, Some(&e), "")
        }
    })?;
    let Some(kind) = tag.kind else {
        return Err(WireError::new(
            ErrorCode::UnknownType,
            "missing field `type`",
        ));
    };
    match F::from_json_payload(&kind, bytes) {
        None => Err(WireError::new(
            ErrorCode::UnknownType,
            format!("unknown frame type {:?}", truncate(&kind, 40)),
        )),
        Some(Ok(frame)) => Ok(frame),
        Some(Err(e)) => Err(classify_json(bytes, Some(&e), "")),
    }
}

/// `"type"`, searched for after a leading tag.
static TYPE_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(br#""type""#));

/// The tag of a frame that opens with `{"type":"name"` (no whitespace, no escapes in
/// the name), as apps and this crate write frames; anything else, and any frame with
/// `"type"` again after it (which the general path refuses as a duplicate field), takes
/// the general path.
fn leading_tag(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.strip_prefix(br#"{"type":""#)?;
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_lowercase() || *b == b'_'))?;
    if rest[end] != b'"' || TYPE_KEY.find(&rest[end..]).is_some() {
        return None;
    }
    // The name is ASCII lowercase and underscores, so valid UTF-8.
    std::str::from_utf8(&rest[..end]).ok()
}

/// Maps a JSON decode failure to a stable code.
fn classify_json(bytes: &[u8], e: Option<&serde_json::Error>, fallback: &str) -> WireError {
    if let Err(utf8) = std::str::from_utf8(bytes) {
        return WireError::new(ErrorCode::InvalidUtf8, utf8.to_string());
    }
    let Some(e) = e else {
        return WireError::new(ErrorCode::BadFrame, fallback);
    };
    let detail = e.to_string();
    let code = match e.classify() {
        serde_json::error::Category::Data if detail.starts_with("missing field") => {
            ErrorCode::MissingField
        }
        serde_json::error::Category::Data => ErrorCode::BadField,
        _ if detail.starts_with("number out of range") => ErrorCode::BadField,
        // Well-formed JSON that serde still calls a syntax error has a value of the
        // wrong shape (an enum written as an empty object, say).
        _ if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => ErrorCode::BadField,
        _ => ErrorCode::BadFrame,
    };
    WireError::new(code, detail)
}

fn decode_binary<F: Frame>(bytes: &[u8]) -> Result<F, WireError> {
    use bincode::error::DecodeError;
    if let Some(variant) = leading_varint(bytes)
        && variant >= F::types().len() as u64
    {
        return Err(WireError::new(
            ErrorCode::UnknownType,
            format!("unknown frame type number {variant}"),
        ));
    }
    let (frame, read) =
        bincode::serde::decode_from_slice::<F, _>(bytes, binary_config()).map_err(|e| {
            let code = match &e {
                DecodeError::UnexpectedVariant { .. } => ErrorCode::UnknownType,
                DecodeError::Utf8 { .. } => ErrorCode::InvalidUtf8,
                DecodeError::LimitExceeded => ErrorCode::FrameTooLarge,
                _ => ErrorCode::BadFrame,
            };
            WireError::new(code, e.to_string())
        })?;
    if read != bytes.len() {
        return Err(WireError::new(
            ErrorCode::BadFrame,
            format!("{} trailing bytes after the frame", bytes.len() - read),
        ));
    }
    Ok(frame)
}

/// The frame's leading varint (its variant number) in bincode's standard encoding:
/// one byte below 251, else a marker (251, 252, 253) and a little-endian u16, u32 or u64.
fn leading_varint(bytes: &[u8]) -> Option<u64> {
    let (&first, rest) = bytes.split_first()?;
    let wide = |n: usize| -> Option<u64> {
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(rest.get(..n)?);
        Some(u64::from_le_bytes(buf))
    };
    match first {
        0..=250 => Some(u64::from(first)),
        251 => wide(2),
        252 => wide(4),
        253 => wide(8),
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
