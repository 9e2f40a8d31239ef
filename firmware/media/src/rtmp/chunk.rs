//! RTMP chunk streams (RTMP 1.0 §5.3).
//!
//! A message is cut into chunks of at most the sender's chunk size. Each
//! chunk starts with a basic header (format and chunk stream id, 1–3 bytes,
//! §5.3.1.1) and a message header whose size depends on the format
//! (§5.3.1.2): 11 bytes for format 0 (absolute timestamp, length, type,
//! stream id), 7 for format 1 (timestamp delta, length, type), 3 for
//! format 2 (delta), none for format 3 (everything as before). A timestamp
//! or delta of 0xFFFFFF or more is written as 0xFFFFFF followed by a 4-byte
//! extended timestamp (§5.3.1.3), which is repeated in the format-3 chunks
//! that continue the message, as Flash Media Server, FFmpeg and nginx-rtmp
//! do.
//!
//! [`ChunkWriter`] uses format 0 for the first message on a chunk stream (or
//! when the stream id changes or time goes back), format 1 after that, and
//! format 3 for continuation chunks. [`ChunkReader`] reads all four.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{RtmpError, MAX_BUFFERED, MAX_CHUNK_STREAMS, MAX_MESSAGE};

/// The chunk size both sides start with (§5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size (§5.4.1: 31 bits).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Largest chunk stream id a 3-byte basic header can carry (§5.3.1.1).
pub const MAX_CSID: u32 = 65599;
/// Timestamps this large or larger need the extended field.
const EXTENDED: u32 = 0xFF_FFFF;

/// One whole message (§5.3.1.2, §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream it came on.
    pub csid: u32,
    /// Milliseconds (absolute, after adding deltas).
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    timestamp: u32,
    stream_id: u32,
}

/// Cuts messages into chunks.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    chunk_size: u32,
    last: BTreeMap<u32, Sent>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        ChunkWriter {
            chunk_size: DEFAULT_CHUNK_SIZE,
            last: BTreeMap::new(),
        }
    }
}

fn push_u24(out: &mut Vec<u8>, v: u32) {
    let b = v.to_be_bytes();
    out.extend_from_slice(&b[1..]);
}

fn basic_header(out: &mut Vec<u8>, fmt: u8, csid: u32) {
    let f = fmt << 6;
    if csid < 64 {
        out.push(f | csid as u8);
    } else if csid < 320 {
        out.extend_from_slice(&[f, (csid - 64) as u8]);
    } else {
        let v = ((csid - 64) as u16).to_le_bytes();
        out.extend_from_slice(&[f | 1, v[0], v[1]]);
    }
}

impl ChunkWriter {
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Uses `size` for the messages written from now on. Call it right after
    /// writing the Set Chunk Size message that announces it (§5.4.1); sizes
    /// outside 1..=0x7FFFFFFF are refused.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), RtmpError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(RtmpError::BadChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Appends `payload` as one message on chunk stream `csid` (2..=65599)
    /// to `out`. Fails, writing nothing, on a bad csid or a payload over the
    /// 24-bit length field.
    pub fn write(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RtmpError> {
        if !(2..=MAX_CSID).contains(&csid) {
            return Err(RtmpError::BadChunkStreamId(csid));
        }
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= 0xFF_FFFF)
            .ok_or(RtmpError::MessageTooLarge(
                u32::try_from(payload.len()).unwrap_or(u32::MAX),
            ))?;
        let (fmt, ts_field) = match self.last.get(&csid) {
            Some(l) if l.stream_id == stream_id && timestamp >= l.timestamp => {
                (1, timestamp - l.timestamp)
            }
            _ => (0, timestamp),
        };
        let ext = ts_field >= EXTENDED;
        basic_header(out, fmt, csid);
        push_u24(out, ts_field.min(EXTENDED));
        push_u24(out, len);
        out.push(type_id);
        if fmt == 0 {
            out.extend_from_slice(&stream_id.to_le_bytes());
        }
        if ext {
            out.extend_from_slice(&ts_field.to_be_bytes());
        }
        let size = self.chunk_size as usize;
        let mut chunks = payload.chunks(size);
        if let Some(first) = chunks.next() {
            out.extend_from_slice(first);
        }
        for c in chunks {
            basic_header(out, 3, csid);
            if ext {
                out.extend_from_slice(&ts_field.to_be_bytes());
            }
            out.extend_from_slice(c);
        }
        self.last.insert(
            csid,
            Sent {
                timestamp,
                stream_id,
            },
        );
        Ok(())
    }
}

/// What the reader remembers about one chunk stream.
#[derive(Debug, Clone, Default)]
struct InStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header had an extended timestamp (so format-3 chunks carry one).
    ext: bool,
    /// The message being reassembled (empty between messages).
    payload: Vec<u8>,
}

/// Reassembles messages from chunks.
#[derive(Debug, Clone)]
pub struct ChunkReader {
    chunk_size: u32,
    streams: BTreeMap<u32, InStream>,
    /// Input not yet parsed, from `pos`.
    buf: Vec<u8>,
    pos: usize,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: BTreeMap::new(),
            buf: Vec::new(),
            pos: 0,
        }
    }
}

/// A chunk header parsed but not yet applied.
struct Header {
    fmt: u8,
    csid: u32,
    /// Bytes taken by the basic and message headers and extended timestamp.
    len: usize,
    timestamp_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    ext: bool,
}

impl ChunkReader {
    /// The peer's chunk size, from its Set Chunk Size message (§5.4.1).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), RtmpError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(RtmpError::BadChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Drops the partly received message on `csid` (Abort Message, §5.4.2).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            s.payload = Vec::new();
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 4096 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, `Ok(None)` when more input is needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, RtmpError> {
        loop {
            let Some(h) = self.header()? else {
                return Ok(None);
            };
            if !self.streams.contains_key(&h.csid) && self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(RtmpError::TooManyChunkStreams);
            }
            let prev = self.streams.get(&h.csid);
            let continuing = prev.is_some_and(|s| !s.payload.is_empty());
            let length = if h.fmt <= 1 {
                h.length
            } else {
                prev.map_or(0, |s| s.length)
            };
            if length > MAX_MESSAGE {
                return Err(RtmpError::MessageTooLarge(length));
            }
            let have = if continuing && h.fmt == 3 {
                prev.map_or(0, |s| s.payload.len())
            } else {
                0
            };
            let n = (length as usize)
                .saturating_sub(have)
                .min(self.chunk_size as usize);
            let start = self.pos + h.len;
            let Some(body) = self.buf.get(start..start + n) else {
                return Ok(None);
            };
            // The whole chunk is here: apply it.
            let buffered: usize = self.streams.values().map(|s| s.payload.len()).sum();
            if buffered + n > MAX_BUFFERED {
                return Err(RtmpError::TooMuchBuffered);
            }
            let s = self.streams.entry(h.csid).or_default();
            if !(continuing && h.fmt == 3) {
                // A new message. (A header other than format 3 in the middle
                // of a message abandons it.)
                s.payload.clear();
                match h.fmt {
                    0 => {
                        s.timestamp = h.timestamp_field;
                        s.delta = 0;
                        s.length = h.length;
                        s.type_id = h.type_id;
                        s.stream_id = h.stream_id;
                    }
                    1 => {
                        s.delta = h.timestamp_field;
                        s.timestamp = s.timestamp.wrapping_add(s.delta);
                        s.length = h.length;
                        s.type_id = h.type_id;
                    }
                    2 => {
                        s.delta = h.timestamp_field;
                        s.timestamp = s.timestamp.wrapping_add(s.delta);
                    }
                    _ => s.timestamp = s.timestamp.wrapping_add(s.delta),
                }
                if h.fmt != 3 {
                    s.ext = h.ext;
                }
            }
            s.payload.extend_from_slice(body);
            self.pos = start + n;
            if s.payload.len() >= s.length as usize {
                return Ok(Some(Message {
                    csid: h.csid,
                    timestamp: s.timestamp,
                    type_id: s.type_id,
                    stream_id: s.stream_id,
                    payload: core::mem::take(&mut s.payload),
                }));
            }
        }
    }

    /// Parses the chunk header at `pos` without consuming it.
    fn header(&self) -> Result<Option<Header>, RtmpError> {
        let b = &self.buf[self.pos.min(self.buf.len())..];
        let Some(&b0) = b.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut i) = match b0 & 0x3F {
            0 => match b.get(1) {
                Some(&x) => (64 + u32::from(x), 2),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&x), Some(&y)) => (64 + u32::from(x) + 256 * u32::from(y), 3),
                _ => return Ok(None),
            },
            c => (u32::from(c), 1),
        };
        let prev = self.streams.get(&csid);
        if fmt != 0 && prev.is_none() {
            return Err(RtmpError::NoPreviousHeader(csid));
        }
        let mh = [11usize, 7, 3, 0][usize::from(fmt)];
        let Some(m) = b.get(i..i + mh) else {
            return Ok(None);
        };
        let u24 = |o: usize| u32::from_be_bytes([0, m[o], m[o + 1], m[o + 2]]);
        let mut h = Header {
            fmt,
            csid,
            len: 0,
            timestamp_field: 0,
            length: 0,
            type_id: 0,
            stream_id: 0,
            ext: false,
        };
        if fmt <= 2 {
            h.timestamp_field = u24(0);
            h.ext = h.timestamp_field == EXTENDED;
        } else {
            h.ext = prev.is_some_and(|s| s.ext);
        }
        if fmt <= 1 {
            h.length = u24(3);
            h.type_id = m[6];
        }
        if fmt == 0 {
            h.stream_id = u32::from_le_bytes([m[7], m[8], m[9], m[10]]);
        }
        i += mh;
        if h.ext {
            let Some(e) = b.get(i..i + 4) else {
                return Ok(None);
            };
            let v = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            if fmt <= 2 {
                h.timestamp_field = v;
            }
            i += 4;
        }
        h.len = i;
        Ok(Some(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn ten_kilobytes_at_4096_byte_exact() {
        let mut w = ChunkWriter::default();
        w.set_chunk_size(4096).unwrap();
        let payload: Vec<u8> = (0..10_240u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        w.write(6, 1000, 9, 1, &payload, &mut out).unwrap();
        // fmt 0, csid 6; timestamp 1000 = 0x0003E8; length 10240 = 0x002800;
        // type 9; stream id 1 little-endian.
        assert_eq!(
            &out[..12],
            &[0x06, 0x00, 0x03, 0xE8, 0x00, 0x28, 0x00, 0x09, 0x01, 0x00, 0x00, 0x00]
        );
        assert_eq!(&out[12..12 + 4096], &payload[..4096]);
        // fmt 3 continuation headers: a single byte 0xC6.
        assert_eq!(out[12 + 4096], 0xC6);
        assert_eq!(out[12 + 4096 + 1 + 4096], 0xC6);
        assert_eq!(out.len(), 12 + 10_240 + 2);
        // The next message on the stream: fmt 1, delta 33.
        out.clear();
        w.write(6, 1033, 9, 1, &[1, 2], &mut out).unwrap();
        assert_eq!(out, [0x46, 0, 0, 33, 0, 0, 2, 9, 1, 2]);
        // Time going back (or another stream id) needs fmt 0 again.
        out.clear();
        w.write(6, 5, 9, 1, &[], &mut out).unwrap();
        assert_eq!(out, [0x06, 0, 0, 5, 0, 0, 0, 9, 1, 0, 0, 0]);
    }

    #[test]
    fn extended_timestamp_is_repeated_in_continuations() {
        let mut w = ChunkWriter::default();
        let mut out = Vec::new();
        w.write(4, 0x0100_0000, 8, 1, &[0xAB; 130], &mut out)
            .unwrap();
        assert_eq!(
            &out[..16],
            &[
                0x04, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x82, 0x08, 0x01, 0, 0, 0, // fmt 0
                0x01, 0x00, 0x00, 0x00, // extended timestamp
            ]
        );
        // After 128 bytes: 0xC4 then the extended timestamp again.
        assert_eq!(
            &out[16 + 128..16 + 128 + 5],
            &[0xC4, 0x01, 0x00, 0x00, 0x00]
        );
        assert_eq!(out.len(), 16 + 128 + 5 + 2);
        // And it reads back.
        let mut r = ChunkReader::default();
        r.push(&out);
        let m = r.next_message().unwrap().unwrap();
        assert_eq!(
            (m.timestamp, m.type_id, m.payload.len()),
            (0x0100_0000, 8, 130)
        );
        assert_eq!(r.next_message(), Ok(None));
    }

    #[test]
    fn basic_header_sizes() {
        let mut w = ChunkWriter::default();
        let mut out = Vec::new();
        w.write(64, 0, 20, 0, &[], &mut out).unwrap();
        assert_eq!(&out[..2], &[0x00, 0x00]);
        out.clear();
        w.write(320, 0, 20, 0, &[], &mut out).unwrap();
        assert_eq!(&out[..3], &[0x01, 0x00, 0x01]);
        assert_eq!(
            w.write(1, 0, 20, 0, &[], &mut out),
            Err(RtmpError::BadChunkStreamId(1))
        );
        let mut r = ChunkReader::default();
        let mut w = ChunkWriter::default();
        let mut all = Vec::new();
        for csid in [2, 63, 64, 319, 320, MAX_CSID] {
            w.write(csid, 7, 20, 0, &[csid as u8], &mut all).unwrap();
        }
        // Byte by byte, to exercise every "need more input" path.
        let mut got = Vec::new();
        for b in &all {
            r.push(&[*b]);
            while let Some(m) = r.next_message().unwrap() {
                got.push((m.csid, m.payload[0]));
            }
        }
        let want: Vec<(u32, u8)> = [2, 63, 64, 319, 320, MAX_CSID]
            .iter()
            .map(|&c| (c, c as u8))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn reader_formats_and_chunk_size() {
        // Spec §5.3.2.1 example 1 shape: fmt 0, then fmt 2 (delta 20), then
        // fmt 3 messages reusing length, type and delta.
        let mut bytes = vec![
            0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x02, 0x08, 0x01, 0, 0, 0, 1, 1,
        ];
        bytes.extend_from_slice(&[0x83, 0x00, 0x00, 0x14, 2, 2]);
        bytes.extend_from_slice(&[0xC3, 3, 3]);
        let mut r = ChunkReader::default();
        r.push(&bytes);
        let ts: Vec<u32> = core::iter::from_fn(|| r.next_message().unwrap())
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, [1000, 1020, 1040]);
        // A 200-byte message at the default chunk size of 128, then at 4096.
        let mut w = ChunkWriter::default();
        let mut out = Vec::new();
        w.write(3, 0, 20, 0, &[7; 200], &mut out).unwrap();
        r.push(&out);
        assert_eq!(r.next_message().unwrap().unwrap().payload, [7; 200]);
        w.set_chunk_size(4096).unwrap();
        r.set_chunk_size(4096).unwrap();
        out.clear();
        w.write(3, 0, 20, 0, &[8; 200], &mut out).unwrap();
        assert_eq!(out.len(), 8 + 200);
        r.push(&out);
        assert_eq!(r.next_message().unwrap().unwrap().payload, [8; 200]);
    }

    #[test]
    fn reader_refuses_bad_input() {
        let mut r = ChunkReader::default();
        r.push(&[0x45, 0, 0, 0, 0, 0, 1, 20]);
        assert_eq!(r.next_message(), Err(RtmpError::NoPreviousHeader(5)));
        let mut r = ChunkReader::default();
        r.push(&[0x03, 0, 0, 0, 0x20, 0, 0, 20, 0, 0, 0, 0]);
        assert_eq!(r.next_message(), Err(RtmpError::MessageTooLarge(0x20_0000)));
        assert_eq!(r.set_chunk_size(0), Err(RtmpError::BadChunkSize(0)));
        let mut r = ChunkReader::default();
        let mut many = Vec::new();
        let mut w = ChunkWriter::default();
        for csid in 2..(2 + MAX_CHUNK_STREAMS as u32 + 1) {
            w.write(csid, 0, 20, 0, &[], &mut many).unwrap();
        }
        r.push(&many);
        let res: Result<Vec<_>, _> = core::iter::from_fn(|| r.next_message().transpose()).collect();
        assert_eq!(res, Err(RtmpError::TooManyChunkStreams));
    }
}
