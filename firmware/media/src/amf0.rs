//! Action Message Format version 0 (Adobe, "Action Message Format -- AMF 0",
//! December 2007), the encoding of RTMP command messages (RTMP 1.0 §7.1.1)
//! and FLV script data (FLV 10.1 Annex E.4.4).
//!
//! Implemented types (AMF0 §2.1 marker table): number (§2.2), boolean
//! (§2.3), string (§2.4), object (§2.5), null (§2.7), undefined (§2.8),
//! ECMA array (§2.10), object end (§2.11), strict array (§2.12) and long
//! string (§2.14). Movie clip, reference, date, unsupported, XML document,
//! typed object and the AMF3 switch are refused with
//! [`Amf0Error::UnsupportedMarker`]; no RTMP ingest conversation needs them.
//!
//! The decoder takes untrusted bytes: it never panics, never allocates more
//! than the input can justify (counts in the stream are not trusted for
//! preallocation), refuses nesting deeper than [`MAX_DEPTH`] and more than
//! [`MAX_VALUES`] values in one call. Strings that are not valid UTF-8 are
//! decoded lossily (they are only ever shown to people).

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

/// Deepest nesting of objects and arrays the decoder accepts.
pub const MAX_DEPTH: usize = 16;
/// Most values (nested ones included) one [`decode`] call accepts.
pub const MAX_VALUES: usize = 4096;

/// Type markers (AMF0 §2.1).
pub mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const LONG_STRING: u8 = 0x0C;
}

/// One AMF0 value. Object and ECMA array properties keep their order (RTMP
/// peers do not care, but byte-exact tests and humans reading captures do).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    /// A string or long string; [`encode`] picks the long form only when the
    /// UTF-8 is longer than 65535 bytes.
    String(String),
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    EcmaArray(Vec<(String, Value)>),
    StrictArray(Vec<Value>),
}

impl Value {
    /// Shorthand for `Value::String(s.to_owned())`.
    pub fn str(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object or ECMA array (the first with that name).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => {
                p.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }
}

/// Why bytes could not be decoded as AMF0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Amf0Error {
    #[error("AMF0 data ends in the middle of a value")]
    Truncated,
    #[error("AMF0 type marker 0x{0:02x} is not supported")]
    UnsupportedMarker(u8),
    #[error("AMF0 object end marker outside an object")]
    UnexpectedObjectEnd,
    #[error("AMF0 values nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("more than {MAX_VALUES} AMF0 values")]
    TooManyValues,
}

/// Appends the encoding of `value` to `out`.
///
/// Never fails: a property name longer than 65535 bytes (which the format
/// cannot express) is cut to 65535 bytes at a character boundary.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Number(n) => encode_number(*n, out),
        Value::Boolean(b) => {
            out.push(marker::BOOLEAN);
            out.push(u8::from(*b));
        }
        Value::String(s) => encode_string(s, out),
        Value::Object(props) => {
            out.push(marker::OBJECT);
            encode_properties(props, out);
        }
        Value::Null => out.push(marker::NULL),
        Value::Undefined => out.push(marker::UNDEFINED),
        Value::EcmaArray(props) => {
            out.push(marker::ECMA_ARRAY);
            let n = u32::try_from(props.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_be_bytes());
            encode_properties(props, out);
        }
        Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_be_bytes());
            for v in items.iter().take(n as usize) {
                encode(v, out);
            }
        }
    }
}

/// Number: marker and an IEEE 754 double, big-endian (§2.2).
pub fn encode_number(n: f64, out: &mut Vec<u8>) {
    out.push(marker::NUMBER);
    out.extend_from_slice(&n.to_be_bytes());
}

/// String (§2.4), or long string (§2.14) when longer than 65535 bytes.
pub fn encode_string(s: &str, out: &mut Vec<u8>) {
    match u16::try_from(s.len()) {
        Ok(n) => {
            out.push(marker::STRING);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Err(_) => {
            out.push(marker::LONG_STRING);
            let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    let n = s.len().min(u32::MAX as usize);
    out.extend_from_slice(&s.as_bytes()[..n]);
}

/// UTF-8-empty (the key part of the object end, §2.11) is a zero length.
fn encode_key(key: &str, out: &mut Vec<u8>) {
    let mut n = key.len().min(0xFFFF);
    while !key.is_char_boundary(n) {
        n -= 1;
    }
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&key.as_bytes()[..n]);
}

fn encode_properties(props: &[(String, Value)], out: &mut Vec<u8>) {
    for (k, v) in props {
        encode_key(k, out);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
}

/// Decodes one value from the start of `input`; returns it and the number of
/// bytes it took.
pub fn decode(input: &[u8]) -> Result<(Value, usize), Amf0Error> {
    let mut r = Reader {
        buf: input,
        pos: 0,
        values: 0,
    };
    let v = r.value(0)?;
    Ok((v, r.pos))
}

/// Decodes values until `input` is used up (a command message body, or
/// script data). At most [`MAX_VALUES`] values in all.
pub fn decode_all(input: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    let mut r = Reader {
        buf: input,
        pos: 0,
        values: 0,
    };
    let mut out = Vec::new();
    while r.pos < input.len() {
        out.push(r.value(0)?);
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Values decoded so far (the [`MAX_VALUES`] bound).
    values: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Amf0Error> {
        let end = self.pos.checked_add(n).ok_or(Amf0Error::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Amf0Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn utf8(&mut self, n: usize) -> Result<String, Amf0Error> {
        let b = self.take(n)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Value, Amf0Error> {
        if depth >= MAX_DEPTH {
            return Err(Amf0Error::TooDeep);
        }
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(Amf0Error::TooManyValues);
        }
        let m = self.u8()?;
        Ok(match m {
            marker::NUMBER => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Number(f64::from_be_bytes(a))
            }
            marker::BOOLEAN => Value::Boolean(self.u8()? != 0),
            marker::STRING => {
                let n = self.u16()?;
                Value::String(self.utf8(usize::from(n))?)
            }
            marker::LONG_STRING => {
                let n = self.u32()?;
                Value::String(self.utf8(n as usize)?)
            }
            marker::OBJECT => Value::Object(self.properties(depth)?),
            marker::NULL => Value::Null,
            marker::UNDEFINED => Value::Undefined,
            marker::ECMA_ARRAY => {
                // The count is a hint (§2.10); the end marker is what counts.
                let _count = self.u32()?;
                Value::EcmaArray(self.properties(depth)?)
            }
            marker::STRICT_ARRAY => {
                let n = self.u32()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    // Every value takes at least one byte, so a huge count on
                    // a short input ends in Truncated, not a long loop.
                    items.push(self.value(depth + 1)?);
                }
                Value::StrictArray(items)
            }
            marker::OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd),
            other => return Err(Amf0Error::UnsupportedMarker(other)),
        })
    }

    /// Properties up to and including the object end (§2.5, §2.11).
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let n = self.u16()?;
            if n == 0 && self.buf.get(self.pos) == Some(&marker::OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let key = self.utf8(usize::from(n))?;
            let v = self.value(depth + 1)?;
            props.push((key, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out);
        out
    }

    #[test]
    fn scalars_byte_exact() {
        // 1.0 as a double is 3FF0 0000 0000 0000.
        assert_eq!(
            enc(&Value::Number(1.0)),
            [0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(enc(&Value::Boolean(true)), [0x01, 0x01]);
        assert_eq!(
            enc(&Value::str("connect")),
            [0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't']
        );
        assert_eq!(enc(&Value::Null), [0x05]);
        assert_eq!(enc(&Value::Undefined), [0x06]);
    }

    #[test]
    fn object_and_arrays_byte_exact() {
        let obj = Value::Object(vec![("app".into(), Value::str("live"))]);
        assert_eq!(
            enc(&obj),
            [
                0x03, 0x00, 0x03, b'a', b'p', b'p', 0x02, 0x00, 0x04, b'l', b'i', b'v', b'e', 0x00,
                0x00, 0x09
            ]
        );
        let ecma = Value::EcmaArray(vec![("w".into(), Value::Number(2.0))]);
        assert_eq!(
            enc(&ecma),
            [
                0x08, 0, 0, 0, 1, 0x00, 0x01, b'w', 0x00, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00,
                0x09
            ]
        );
        let strict = Value::StrictArray(vec![Value::Null, Value::Boolean(false)]);
        assert_eq!(enc(&strict), [0x0A, 0, 0, 0, 2, 0x05, 0x01, 0x00]);
    }

    #[test]
    fn long_string_above_64k() {
        let s = "x".repeat(70_000);
        let b = enc(&Value::String(s.clone()));
        assert_eq!(&b[..5], &[0x0C, 0x00, 0x01, 0x11, 0x70]);
        assert_eq!(b.len(), 5 + 70_000);
        assert_eq!(decode(&b), Ok((Value::String(s), b.len())));
    }

    #[test]
    fn round_trip_nested() {
        let v = Value::Object(vec![
            ("level".into(), Value::str("error")),
            ("n".into(), Value::Number(-2.5)),
            (
                "inner".into(),
                Value::EcmaArray(vec![(
                    "list".into(),
                    Value::StrictArray(vec![Value::Undefined, Value::str("é")]),
                )]),
            ),
        ]);
        let b = enc(&v);
        assert_eq!(decode(&b), Ok((v.clone(), b.len())));
        assert_eq!(v.get("level").and_then(Value::as_str), Some("error"));
        assert_eq!(v.get("n").and_then(Value::as_number), Some(-2.5));
        let mut two = b.clone();
        two.extend_from_slice(&b);
        assert_eq!(decode_all(&two), Ok(vec![v.clone(), v]));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(decode(&[]), Err(Amf0Error::Truncated));
        assert_eq!(decode(&[0x00, 1, 2]), Err(Amf0Error::Truncated));
        assert_eq!(decode(&[0x02, 0xFF, 0xFF, b'a']), Err(Amf0Error::Truncated));
        assert_eq!(
            decode(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(decode(&[0x0B]), Err(Amf0Error::UnsupportedMarker(0x0B)));
        assert_eq!(decode(&[0x09]), Err(Amf0Error::UnexpectedObjectEnd));
        // A strict array claiming four billion items on a tiny input.
        assert_eq!(
            decode(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05]),
            Err(Amf0Error::Truncated)
        );
        // Object without its end.
        assert_eq!(
            decode(&[0x03, 0x00, 0x01, b'a', 0x05]),
            Err(Amf0Error::Truncated)
        );
        // Invalid UTF-8 is shown, not refused.
        assert_eq!(
            decode(&[0x02, 0x00, 0x01, 0xFF]),
            Ok((Value::str("\u{FFFD}"), 4))
        );
    }

    #[test]
    fn depth_and_count_are_bounded() {
        // 17 nested strict arrays of one element.
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH {
            deep.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        deep.push(0x05);
        assert_eq!(decode(&deep), Err(Amf0Error::TooDeep));
        let many = vec![0x05u8; MAX_VALUES + 1];
        assert_eq!(decode_all(&many), Err(Amf0Error::TooManyValues));
        assert_eq!(
            decode_all(&many[..MAX_VALUES]).map(|v| v.len()),
            Ok(MAX_VALUES)
        );
    }

    #[test]
    fn long_keys_are_cut_at_a_char_boundary() {
        let key = "é".repeat(40_000); // 80_000 bytes
        let b = enc(&Value::Object(vec![(key, Value::Null)]));
        // 65535 is odd, so the cut falls back to 65534 bytes (32767 'é').
        assert_eq!(&b[1..3], &65534u16.to_be_bytes());
        let (v, n) = decode(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(v, Value::Object(vec![("é".repeat(32_767), Value::Null)]));
    }
}
