//! An RTMP client session that publishes one stream (RTMP 1.0 §7.2, §7.3.2).
//!
//! The conversation, as Flash Media Live Encoder, OBS and FFmpeg hold it and
//! every ingest expects:
//!
//! ```text
//! C0 C1                      ──►
//!                            ◄──  S0 S1            (C2 goes out here)
//!                            ◄──  S2
//! Set Chunk Size 4096        ──►                   (§5.4.1)
//! connect(app, tcUrl, …) [1] ──►                   (§7.2.1.1)
//!                            ◄──  Window Ack Size, Set Peer Bandwidth,
//!                                 Set Chunk Size, _result [1]
//! releaseStream(key) [2], FCPublish(key) [3], createStream [4] ──►
//!                            ◄──  _result [4] (stream id)
//! publish(key, "live") [0]   ──►  on the new stream (§7.2.2.6)
//!                            ◄──  onStatus NetStream.Publish.Start
//! @setDataFrame onMetaData, AVC sequence header, video …  ──►
//! ```
//!
//! The session answers what the server asks on the way: Acknowledgement
//! each time the server's window of received bytes is crossed (§5.4.3,
//! §5.4.4), Window Acknowledgement Size after Set Peer Bandwidth (§5.4.5),
//! PingResponse to PingRequest (§7.1.7). `_error` and `onStatus` with level
//! `error` (e.g. `NetStream.Publish.BadName`,
//! `NetConnection.Connect.Rejected`) become [`Event::Rejected`] with the
//! server's code and description.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::chunk::{ChunkReader, ChunkWriter, Message};
use super::handshake::Handshake;
use super::{msg_type, RtmpError};
use crate::amf0::{self, Value};
use crate::flv;

/// Chunk streams this client sends on (any of 3..=65599 would do; these are
/// the ones FFmpeg and librtmp use, which makes captures easy to compare).
const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_STREAM_COMMAND: u32 = 4;
const CSID_DATA: u32 = 5;
const CSID_VIDEO: u32 = 6;
/// Audio on its own chunk stream, as OBS and nginx-rtmp's relays do, so each
/// stream's header compression runs on its own timestamps.
const CSID_AUDIO: u32 = 7;

/// Transaction ids of the commands that get an answer (§7.2.1).
const TID_CONNECT: u32 = 1;
const TID_RELEASE_STREAM: u32 = 2;
const TID_FC_PUBLISH: u32 = 3;
const TID_CREATE_STREAM: u32 = 4;
/// `publish` carries transaction id 0 (§7.2.2.6); it is answered by onStatus.
const TID_PUBLISH: u32 = 0;

/// What to publish and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `app` of `connect`, e.g. `live`.
    pub app: String,
    /// `tcUrl` of `connect`: `rtmp://host:port/app`.
    pub tc_url: String,
    /// The stream name given to `releaseStream`, `FCPublish` and `publish`.
    pub stream_key: String,
    /// `flashVer` of `connect`, e.g. `FMLE/3.0 (compatible; roomcast/0.1.0)`.
    pub flash_ver: String,
    /// Chunk size announced and used for sending (1..=0x7FFFFFFF).
    pub chunk_size: u32,
    /// How long the server may take from the first byte to
    /// `NetStream.Publish.Start` before [`ClientSession::handle_timeout`]
    /// gives up.
    pub setup_timeout_ms: u32,
    /// Seeds C1's random bytes.
    pub random_seed: u64,
}

impl ClientConfig {
    /// A configuration with the usual chunk size (4096) and a 10 s setup
    /// timeout.
    pub fn new(app: &str, tc_url: &str, stream_key: &str) -> ClientConfig {
        ClientConfig {
            app: app.into(),
            tc_url: tc_url.into(),
            stream_key: stream_key.into(),
            flash_ver: "FMLE/3.0 (compatible; roomcast)".into(),
            chunk_size: 4096,
            setup_timeout_ms: 10_000,
            random_seed: 0x5EED,
        }
    }
}

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for S0/S1/S2.
    Handshake,
    /// `connect` sent.
    Connecting,
    /// `createStream` sent.
    CreatingStream,
    /// `publish` sent.
    PublishRequested,
    /// The server said `NetStream.Publish.Start`: media may be sent.
    Publishing,
    /// The server refused (see [`Event::Rejected`]).
    Rejected,
}

/// Something the application may want to know or show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    HandshakeDone,
    /// `connect` succeeded.
    Connected,
    /// `NetStream.Publish.Start`: send metadata, sequence header, frames.
    Publishing {
        stream_id: u32,
    },
    /// The server refused connect, createStream or publish.
    Rejected {
        code: String,
        description: String,
    },
    /// Any other `onStatus` (level `status` or `warning`).
    Status {
        level: String,
        code: String,
        description: String,
    },
}

/// One publishing connection, sans-IO.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    state: State,
    handshake: Handshake,
    reader: ChunkReader,
    writer: ChunkWriter,
    out: Vec<u8>,
    events: VecDeque<Event>,
    started_ms: u32,
    stream_id: u32,
    bytes_received: u64,
    /// `bytes_received` when the last Acknowledgement went out.
    acked: u64,
    /// The server's Window Acknowledgement Size; 0 until it sends one.
    window: u32,
    /// The window we last announced to the server.
    sent_window: u32,
    /// The sequence number of the server's last Acknowledgement.
    peer_acked: u32,
}

impl ClientSession {
    /// Starts a session on a connection just opened at `now_ms` (any
    /// millisecond clock, wrapping): C0 and C1 are ready to send.
    pub fn new(config: ClientConfig, now_ms: u32) -> ClientSession {
        let (handshake, c0c1) = Handshake::start(now_ms, config.random_seed);
        ClientSession {
            config,
            state: State::Handshake,
            handshake,
            reader: ChunkReader::default(),
            writer: ChunkWriter::default(),
            out: c0c1,
            events: VecDeque::new(),
            started_ms: now_ms,
            stream_id: 0,
            bytes_received: 0,
            acked: 0,
            window: 0,
            sent_window: 0,
            peer_acked: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The message stream id from `createStream` (0 before).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Bytes received from the server so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// The byte count in the server's last Acknowledgement.
    pub fn peer_acknowledged(&self) -> u32 {
        self.peer_acked
    }

    /// Bytes waiting in [`poll_transmit`](Self::poll_transmit).
    pub fn pending_transmit(&self) -> usize {
        self.out.len()
    }

    /// Moves the bytes to send into `out` (appended).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, on
    /// the same clock as `now_ms`: the setup deadline until publishing
    /// starts, `None` after.
    pub fn poll_timeout(&self) -> Option<u32> {
        match self.state {
            State::Publishing | State::Rejected => None,
            _ => Some(self.started_ms.wrapping_add(self.config.setup_timeout_ms)),
        }
    }

    /// Fails the session if the server has not accepted the stream within
    /// the setup timeout.
    pub fn handle_timeout(&mut self, now_ms: u32) -> Result<(), RtmpError> {
        if self.poll_timeout().is_some()
            && now_ms.wrapping_sub(self.started_ms) >= self.config.setup_timeout_ms
        {
            return Err(RtmpError::SetupTimeout(self.config.setup_timeout_ms));
        }
        Ok(())
    }

    /// Takes bytes read from the connection. An error means the connection
    /// cannot go on (close it); a refusal by the server is an event.
    pub fn handle_input(&mut self, now_ms: u32, data: &[u8]) -> Result<(), RtmpError> {
        self.bytes_received += data.len() as u64;
        if self.handshake.is_done() {
            self.reader.push(data);
        } else {
            let p = self.handshake.handle_input(now_ms, data)?;
            self.out.extend_from_slice(&p.transmit);
            if p.done {
                self.events.push_back(Event::HandshakeDone);
                self.send_connect()?;
                self.reader.push(&p.rest);
            }
        }
        while let Some(m) = self.reader.next_message()? {
            self.on_message(m)?;
        }
        if self.window > 0 && self.bytes_received - self.acked >= u64::from(self.window) {
            // The sequence number is the byte count, modulo 2^32 (§5.4.3).
            let seq = self.bytes_received as u32;
            self.control(msg_type::ACKNOWLEDGEMENT, &seq.to_be_bytes())?;
            self.acked = self.bytes_received;
        }
        Ok(())
    }

    /// Sends `@setDataFrame onMetaData` (once publishing), stamped with the
    /// time of the frame it goes in front of.
    pub fn send_metadata(
        &mut self,
        timestamp_ms: u32,
        meta: &flv::Metadata,
    ) -> Result<(), RtmpError> {
        let body = meta.set_data_frame();
        self.media(CSID_DATA, timestamp_ms, msg_type::DATA_AMF0, &body)
    }

    /// Sends `@setDataFrame onMetaData` with the audio fields (FLV
    /// `audiocodecid` 10 = AAC, rate, channels, bitrate) when the stream has
    /// sound; `None` is exactly [`send_metadata`](Self::send_metadata).
    pub fn send_metadata_with_audio(
        &mut self,
        timestamp_ms: u32,
        meta: &flv::Metadata,
        audio: Option<&flv::AudioMetadata>,
    ) -> Result<(), RtmpError> {
        let body = meta.set_data_frame_with_audio(audio);
        self.media(CSID_DATA, timestamp_ms, msg_type::DATA_AMF0, &body)
    }

    /// Sends the AAC sequence header (`AF 00` + AudioSpecificConfig):
    /// before the first audio frame.
    pub fn send_aac_sequence_header(
        &mut self,
        timestamp_ms: u32,
        asc: &[u8],
    ) -> Result<(), RtmpError> {
        let body = flv::aac_sequence_header(asc);
        self.media(CSID_AUDIO, timestamp_ms, msg_type::AUDIO, &body)
    }

    /// Sends one raw AAC frame (no ADTS header) at its presentation time.
    pub fn send_aac(&mut self, timestamp_ms: u32, raw: &[u8]) -> Result<(), RtmpError> {
        let body = flv::aac_raw(raw);
        self.media(CSID_AUDIO, timestamp_ms, msg_type::AUDIO, &body)
    }

    /// Sends the AVC sequence header made from an
    /// AVCDecoderConfigurationRecord; needed before the first frame and
    /// whenever the parameter sets change.
    pub fn send_avc_sequence_header(
        &mut self,
        timestamp_ms: u32,
        record: &[u8],
    ) -> Result<(), RtmpError> {
        let body = flv::avc_sequence_header(record);
        self.send_video_body(timestamp_ms, &body)
    }

    /// Sends one access unit: `avcc` holds its NAL units with 4-byte length
    /// prefixes; `timestamp_ms` is its decode time, `cts_ms` PTS − DTS.
    pub fn send_video(
        &mut self,
        timestamp_ms: u32,
        cts_ms: i32,
        keyframe: bool,
        avcc: &[u8],
    ) -> Result<(), RtmpError> {
        let mut body = Vec::with_capacity(5 + avcc.len());
        flv::write_avc_nalu_header(keyframe, cts_ms, &mut body);
        body.extend_from_slice(avcc);
        self.send_video_body(timestamp_ms, &body)
    }

    /// Sends a ready FLV video tag body (e.g. [`flv::avc_end_of_sequence`]).
    pub fn send_video_body(&mut self, timestamp_ms: u32, body: &[u8]) -> Result<(), RtmpError> {
        self.media(CSID_VIDEO, timestamp_ms, msg_type::VIDEO, body)
    }

    fn media(&mut self, csid: u32, ts: u32, type_id: u8, body: &[u8]) -> Result<(), RtmpError> {
        if self.state != State::Publishing {
            return Err(RtmpError::NotPublishing);
        }
        let sid = self.stream_id;
        self.writer
            .write(csid, ts, type_id, sid, body, &mut self.out)
    }

    /// A protocol control or user control message: chunk stream 2, message
    /// stream 0, timestamp 0 (§5.4).
    fn control(&mut self, type_id: u8, payload: &[u8]) -> Result<(), RtmpError> {
        self.writer
            .write(CSID_CONTROL, 0, type_id, 0, payload, &mut self.out)
    }

    fn command(&mut self, csid: u32, stream_id: u32, values: &[Value]) -> Result<(), RtmpError> {
        let mut body = Vec::new();
        for v in values {
            amf0::encode(v, &mut body);
        }
        self.writer.write(
            csid,
            0,
            msg_type::COMMAND_AMF0,
            stream_id,
            &body,
            &mut self.out,
        )
    }

    fn send_connect(&mut self) -> Result<(), RtmpError> {
        let size = self.config.chunk_size;
        self.control(msg_type::SET_CHUNK_SIZE, &size.to_be_bytes())?;
        self.writer.set_chunk_size(size)?;
        let obj = Value::Object(alloc::vec![
            ("app".into(), Value::str(&self.config.app)),
            ("type".into(), Value::str("nonprivate")),
            ("flashVer".into(), Value::str(&self.config.flash_ver)),
            ("tcUrl".into(), Value::str(&self.config.tc_url)),
        ]);
        self.command(
            CSID_COMMAND,
            0,
            &[
                Value::str("connect"),
                Value::Number(f64::from(TID_CONNECT)),
                obj,
            ],
        )?;
        self.state = State::Connecting;
        Ok(())
    }

    fn on_message(&mut self, m: Message) -> Result<(), RtmpError> {
        let p = &m.payload;
        let be32 = |what| {
            p.get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(RtmpError::Malformed(what))
        };
        match m.type_id {
            msg_type::SET_CHUNK_SIZE => {
                let size = be32("Set Chunk Size")? & 0x7FFF_FFFF;
                self.reader.set_chunk_size(size)?;
            }
            msg_type::ABORT => self.reader.abort(be32("Abort")?),
            msg_type::ACKNOWLEDGEMENT => self.peer_acked = be32("Acknowledgement")?,
            msg_type::WINDOW_ACK_SIZE => self.window = be32("Window Acknowledgement Size")?,
            msg_type::SET_PEER_BANDWIDTH => {
                let size = be32("Set Peer Bandwidth")?;
                if size != self.sent_window {
                    self.sent_window = size;
                    self.control(msg_type::WINDOW_ACK_SIZE, &size.to_be_bytes())?;
                }
            }
            msg_type::USER_CONTROL => {
                let kind = p
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .ok_or(RtmpError::Malformed("User Control"))?;
                // PingRequest (6) → PingResponse (7) with the same timestamp.
                if kind == 6 {
                    let ts = p.get(2..6).ok_or(RtmpError::Malformed("PingRequest"))?;
                    let mut r = alloc::vec![0, 7];
                    r.extend_from_slice(ts);
                    self.control(msg_type::USER_CONTROL, &r)?;
                }
            }
            msg_type::COMMAND_AMF0 => self.on_command(p)?,
            // An AMF3 command starts with a format byte, then AMF0 (§7.1.1).
            msg_type::COMMAND_AMF3 => self.on_command(p.get(1..).unwrap_or(&[]))?,
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, payload: &[u8]) -> Result<(), RtmpError> {
        let vals = amf0::decode_all(payload)?;
        let name = vals.first().and_then(Value::as_str).unwrap_or("");
        // `as` saturates: NaN and negatives become 0, which no answer we wait
        // for uses except publish's.
        let tid = vals.get(1).and_then(Value::as_number).unwrap_or(0.0) as u32;
        let info = vals
            .iter()
            .skip(2)
            .find(|v| matches!(v, Value::Object(_) | Value::EcmaArray(_)));
        let field = |k: &str| {
            info.and_then(|i| i.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        match name {
            "_result" if tid == TID_CONNECT && self.state == State::Connecting => {
                self.events.push_back(Event::Connected);
                let key = Value::str(&self.config.stream_key);
                for (cmd, tid) in [
                    ("releaseStream", TID_RELEASE_STREAM),
                    ("FCPublish", TID_FC_PUBLISH),
                ] {
                    self.command(
                        CSID_COMMAND,
                        0,
                        &[
                            Value::str(cmd),
                            Value::Number(f64::from(tid)),
                            Value::Null,
                            key.clone(),
                        ],
                    )?;
                }
                self.command(
                    CSID_COMMAND,
                    0,
                    &[
                        Value::str("createStream"),
                        Value::Number(f64::from(TID_CREATE_STREAM)),
                        Value::Null,
                    ],
                )?;
                self.state = State::CreatingStream;
            }
            "_result" if tid == TID_CREATE_STREAM && self.state == State::CreatingStream => {
                // A whole number from 1 to 2^32 - 1 (`as` saturates, so
                // the round trip rejects fractions, NaN and out of range).
                let id = vals
                    .get(3)
                    .and_then(Value::as_number)
                    .map(|n| (n, n as u32))
                    .filter(|&(n, id)| (1..u32::MAX).contains(&id) && f64::from(id) == n)
                    .ok_or(RtmpError::BadStreamId)?;
                self.stream_id = id.1;
                let sid = self.stream_id;
                self.command(
                    CSID_STREAM_COMMAND,
                    sid,
                    &[
                        Value::str("publish"),
                        Value::Number(f64::from(TID_PUBLISH)),
                        Value::Null,
                        Value::str(&self.config.stream_key),
                        Value::str("live"),
                    ],
                )?;
                self.state = State::PublishRequested;
            }
            "_error" if matches!(tid, TID_CONNECT | TID_CREATE_STREAM | TID_PUBLISH) => {
                self.reject(field("code"), field("description"));
            }
            "onStatus" => {
                let (level, code) = (field("level"), field("code"));
                if level == "error" {
                    self.reject(code, field("description"));
                } else if code == "NetStream.Publish.Start" && self.state == State::PublishRequested
                {
                    self.state = State::Publishing;
                    self.events.push_back(Event::Publishing {
                        stream_id: self.stream_id,
                    });
                } else {
                    self.events.push_back(Event::Status {
                        level,
                        code,
                        description: field("description"),
                    });
                }
            }
            "close" => return Err(RtmpError::ClosedByServer),
            // onBWDone, onFCPublish, _checkbw, answers to releaseStream and
            // FCPublish (some servers answer _error: nothing to release).
            _ => {}
        }
        Ok(())
    }

    fn reject(&mut self, code: String, description: String) {
        self.state = State::Rejected;
        let code = if code.is_empty() {
            format!("(no code; refused at {:?})", self.state)
        } else {
            code
        };
        self.events.push_back(Event::Rejected { code, description });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::handshake::PACKET_SIZE;
    use alloc::vec;

    /// The server side of a conversation, built from the spec's message
    /// formats: literal bytes for protocol control messages, AMF0 commands
    /// chunked at the default size of 128.
    struct Server {
        w: ChunkWriter,
        r: ChunkReader,
    }

    impl Server {
        fn new() -> Server {
            Server {
                w: ChunkWriter::default(),
                r: ChunkReader::default(),
            }
        }
        fn command(&mut self, csid: u32, sid: u32, vals: &[Value]) -> Vec<u8> {
            let mut body = Vec::new();
            for v in vals {
                amf0::encode(v, &mut body);
            }
            let mut out = Vec::new();
            self.w.write(csid, 0, 20, sid, &body, &mut out).unwrap();
            out
        }
        /// Messages the client sent, decoded.
        fn read(&mut self, bytes: &[u8]) -> Vec<Message> {
            self.r.push(bytes);
            let mut v = Vec::new();
            while let Some(m) = self.r.next_message().unwrap() {
                if m.type_id == msg_type::SET_CHUNK_SIZE {
                    let n = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                    self.r.set_chunk_size(n).unwrap();
                }
                v.push(m);
            }
            v
        }
    }

    fn status(level: &str, code: &str, desc: &str) -> Value {
        Value::Object(vec![
            ("level".into(), Value::str(level)),
            ("code".into(), Value::str(code)),
            ("description".into(), Value::str(desc)),
        ])
    }

    fn names(msgs: &[Message]) -> Vec<String> {
        msgs.iter()
            .filter(|m| m.type_id == 20)
            .map(|m| {
                amf0::decode_all(&m.payload).unwrap()[0]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn events(c: &mut ClientSession) -> Vec<Event> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    /// Runs handshake and connect; returns client and server after the
    /// client's createStream.
    fn connect() -> (ClientSession, Server) {
        let cfg = ClientConfig::new("live", "rtmp://127.0.0.1:1935/live", "key1");
        let mut c = ClientSession::new(cfg, 1000);
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        assert_eq!(out.len(), 1 + PACKET_SIZE);
        assert_eq!(&out[..9], &[3, 0, 0, 0x03, 0xE8, 0, 0, 0, 0]);
        let mut s0s1s2 = vec![3u8];
        s0s1s2.extend_from_slice(&[0u8; PACKET_SIZE]);
        s0s1s2.extend_from_slice(&out[1..]);
        c.handle_input(1010, &s0s1s2).unwrap();
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        // C2 (S1 echoed, time2 = 1010), then Set Chunk Size 4096, then connect.
        assert_eq!(&out[..8], &[0, 0, 0, 0, 0, 0, 0x03, 0xF2]);
        let rest = &out[PACKET_SIZE..];
        assert_eq!(
            &rest[..16],
            &[0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0, 0, 0x10, 0]
        );
        let mut s = Server::new();
        let msgs = s.read(rest);
        assert_eq!(msgs.len(), 2);
        let connect = amf0::decode_all(&msgs[1].payload).unwrap();
        assert_eq!((msgs[1].csid, msgs[1].stream_id), (3, 0));
        assert_eq!(connect[0], Value::str("connect"));
        assert_eq!(connect[1], Value::Number(1.0));
        assert_eq!(connect[2].get("app"), Some(&Value::str("live")));
        assert_eq!(connect[2].get("type"), Some(&Value::str("nonprivate")));
        assert_eq!(
            connect[2].get("tcUrl"),
            Some(&Value::str("rtmp://127.0.0.1:1935/live"))
        );
        assert!(connect[2].get("flashVer").is_some());
        assert_eq!(events(&mut c), [Event::HandshakeDone]);
        assert_eq!(c.state(), State::Connecting);

        // What nginx-rtmp sends after connect: Window Acknowledgement Size
        // 5000000, Set Peer Bandwidth 5000000 dynamic, Set Chunk Size 4096.
        let mut srv: Vec<u8> = vec![
            0x02, 0, 0, 0, 0, 0, 4, 0x05, 0, 0, 0, 0, 0x00, 0x4C, 0x4B, 0x40, //
            0x02, 0, 0, 0, 0, 0, 5, 0x06, 0, 0, 0, 0, 0x00, 0x4C, 0x4B, 0x40, 0x02, //
            0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x10, 0x00,
        ];
        s.w.set_chunk_size(4096).unwrap();
        srv.extend(s.command(
            3,
            0,
            &[
                Value::str("_result"),
                Value::Number(1.0),
                Value::Object(vec![("fmsVer".into(), Value::str("FMS/3,0,1,123"))]),
                status(
                    "status",
                    "NetConnection.Connect.Success",
                    "Connection succeeded.",
                ),
            ],
        ));
        c.handle_input(1020, &srv).unwrap();
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        // The answer to Set Peer Bandwidth: Window Acknowledgement Size.
        assert_eq!(
            &out[..12],
            &[0x42, 0, 0, 0, 0, 0, 4, 0x05, 0x00, 0x4C, 0x4B, 0x40]
        );
        let msgs = s.read(&out);
        assert_eq!(msgs[0].type_id, msg_type::WINDOW_ACK_SIZE);
        assert_eq!(msgs[0].payload, [0x00, 0x4C, 0x4B, 0x40]);
        assert_eq!(names(&msgs), ["releaseStream", "FCPublish", "createStream"]);
        // createStream, byte for byte: fmt 1 on chunk stream 3 (after the
        // connect's fmt 0), delta 0, length 25, type 20.
        let mut cs = vec![0x43, 0, 0, 0, 0, 0, 25, 20];
        cs.extend_from_slice(b"\x02\x00\x0ccreateStream");
        cs.extend_from_slice(&[0x00, 0x40, 0x10, 0, 0, 0, 0, 0, 0, 0x05]);
        assert!(out.ends_with(&cs), "{out:02x?}");
        let release = amf0::decode_all(&msgs[1].payload).unwrap();
        assert_eq!(release[3], Value::str("key1"));
        assert_eq!(events(&mut c), [Event::Connected]);
        assert_eq!(c.state(), State::CreatingStream);
        (c, s)
    }

    /// Answers createStream with stream id 1 and checks the publish.
    fn create_stream(c: &mut ClientSession, s: &mut Server) {
        // StreamBegin 0 (user control, §7.1.7) and the _result.
        let mut srv = vec![0x02, 0, 0, 0, 0, 0, 6, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        srv.extend(s.command(
            3,
            0,
            &[
                Value::str("_result"),
                Value::Number(4.0),
                Value::Null,
                Value::Number(1.0),
            ],
        ));
        c.handle_input(1030, &srv).unwrap();
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        let msgs = s.read(&out);
        assert_eq!(names(&msgs), ["publish"]);
        assert_eq!((msgs[0].csid, msgs[0].stream_id), (4, 1));
        assert_eq!(
            amf0::decode_all(&msgs[0].payload).unwrap(),
            [
                Value::str("publish"),
                Value::Number(0.0),
                Value::Null,
                Value::str("key1"),
                Value::str("live")
            ]
        );
        assert_eq!(c.state(), State::PublishRequested);
        assert_eq!(c.stream_id(), 1);
    }

    #[test]
    fn scripted_conversation_to_publishing() {
        let (mut c, mut s) = connect();
        create_stream(&mut c, &mut s);
        assert_eq!(
            c.send_video(0, 0, true, &[0, 0, 0, 1, 0x65]),
            Err(RtmpError::NotPublishing)
        );
        // onStatus NetStream.Publish.Start, written out byte for byte:
        // chunk stream 5, message stream 1, 0x63 = 99 bytes of AMF0.
        let mut srv = vec![0x05, 0, 0, 0, 0, 0, 0x63, 0x14, 0x01, 0, 0, 0];
        srv.extend_from_slice(b"\x02\x00\x08onStatus");
        srv.extend_from_slice(&[0x00, 0, 0, 0, 0, 0, 0, 0, 0]); // 0.0
        srv.push(0x05); // null
        srv.push(0x03);
        srv.extend_from_slice(b"\x00\x05level\x02\x00\x06status");
        srv.extend_from_slice(b"\x00\x04code\x02\x00\x17NetStream.Publish.Start");
        srv.extend_from_slice(b"\x00\x0bdescription\x02\x00\x0aStart live");
        srv.extend_from_slice(&[0, 0, 9]);
        assert_eq!(srv.len(), 12 + 0x63);
        c.handle_input(1040, &srv).unwrap();
        assert_eq!(events(&mut c), [Event::Publishing { stream_id: 1 }]);
        assert_eq!(c.state(), State::Publishing);
        assert_eq!(c.poll_timeout(), None);

        // Media: metadata, sequence header, then frames with fmt 1 deltas.
        let meta = flv::Metadata {
            width: 320,
            height: 240,
            framerate: 30.0,
            videodatarate_kbps: 800.0,
            encoder: "roomcast/test".into(),
        };
        c.send_metadata(0, &meta).unwrap();
        c.send_avc_sequence_header(0, &[1, 0x42, 0xC0, 0x1E])
            .unwrap();
        c.send_video(0, 0, true, &[0, 0, 0, 1, 0x65]).unwrap();
        c.send_video(33, 0, false, &[0, 0, 0, 1, 0x41]).unwrap();
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        let msgs = s.read(&out);
        assert_eq!(msgs[0].type_id, msg_type::DATA_AMF0);
        assert_eq!(msgs[0].payload, meta.set_data_frame());
        assert_eq!(msgs[1].payload, [0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1E]);
        assert_eq!(msgs[3].timestamp, 33);
        // The last frame on the wire: fmt 1 on chunk stream 6, delta 33,
        // 10 bytes, type 9, then 0x27 0x01 cts 0 and the NAL unit.
        assert!(out.ends_with(&[0x46, 0, 0, 33, 0, 0, 10, 9, 0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]));

        // Sound: the AAC sequence header, then frames, on chunk stream 7.
        c.send_aac_sequence_header(0, &[0x11, 0x90]).unwrap();
        c.send_aac(21, &[0xde, 0xad]).unwrap();
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        // fmt 0 on chunk stream 7: timestamp 0, 4 bytes, type 8, stream 1
        // (little-endian), then AF 00 11 90; then fmt 1, delta 21, 4 bytes,
        // type 8, AF 01 and the frame.
        assert_eq!(
            out,
            [
                0x07, 0, 0, 0, 0, 0, 4, 8, 1, 0, 0, 0, 0xAF, 0, 0x11, 0x90, //
                0x47, 0, 0, 21, 0, 0, 4, 8, 0xAF, 1, 0xde, 0xad,
            ]
        );
        let audio = flv::AudioMetadata {
            sample_rate: 48_000,
            channels: 2,
            datarate_kbps: 128.0,
        };
        c.send_metadata_with_audio(0, &meta, Some(&audio)).unwrap();
        c.send_metadata_with_audio(0, &meta, None).unwrap();
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        let msgs = s.read(&out);
        assert_eq!(
            msgs[0].payload,
            meta.set_data_frame_with_audio(Some(&audio))
        );
        assert_eq!(msgs[1].payload, meta.set_data_frame());
    }

    #[test]
    fn bad_name_is_a_rejection_with_the_server_text() {
        let (mut c, mut s) = connect();
        create_stream(&mut c, &mut s);
        let srv = s.command(
            5,
            1,
            &[
                Value::str("onStatus"),
                Value::Number(0.0),
                Value::Null,
                status("error", "NetStream.Publish.BadName", "Already publishing"),
            ],
        );
        c.handle_input(1040, &srv).unwrap();
        assert_eq!(
            events(&mut c),
            [Event::Rejected {
                code: "NetStream.Publish.BadName".into(),
                description: "Already publishing".into()
            }]
        );
        assert_eq!(c.state(), State::Rejected);
        assert_eq!(c.send_video(0, 0, true, &[]), Err(RtmpError::NotPublishing));
    }

    #[test]
    fn connect_error_is_a_rejection() {
        let cfg = ClientConfig::new("live", "rtmp://h/live", "k");
        let mut c = ClientSession::new(cfg, 0);
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        let mut srv = vec![3u8];
        srv.extend_from_slice(&[0u8; PACKET_SIZE]);
        srv.extend_from_slice(&out[1..]);
        let mut s = Server::new();
        srv.extend(s.command(
            3,
            0,
            &[
                Value::str("_error"),
                Value::Number(1.0),
                Value::Null,
                status("error", "NetConnection.Connect.Rejected", "No such app"),
            ],
        ));
        c.handle_input(5, &srv).unwrap();
        assert_eq!(
            events(&mut c),
            [
                Event::HandshakeDone,
                Event::Rejected {
                    code: "NetConnection.Connect.Rejected".into(),
                    description: "No such app".into()
                }
            ]
        );
    }

    #[test]
    fn acknowledgement_after_the_window_and_ping() {
        let (mut c, mut s) = connect();
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        assert!(out.is_empty());
        // Window of 3000 bytes, then a PingRequest with timestamp 0x01020304.
        let mut srv = vec![0x02, 0, 0, 0, 0, 0, 4, 0x05, 0, 0, 0, 0, 0, 0, 0x0B, 0xB8];
        srv.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 6, 0x04, 0, 0, 0, 0, 0, 6, 1, 2, 3, 4]);
        c.handle_input(2000, &srv).unwrap();
        c.poll_transmit(&mut out);
        // PingResponse: user control type 7, same timestamp; fmt 1 on chunk
        // stream 2 (Window Acknowledgement Size went there before).
        assert!(out.starts_with(&[0x42, 0, 0, 0, 0, 0, 6, 0x04, 0, 7, 1, 2, 3, 4]));
        // The handshake and connect took the count past 3000: an
        // Acknowledgement of everything so far follows, byte for byte.
        let seq = (c.bytes_received() as u32).to_be_bytes();
        assert!(c.bytes_received() >= 3000);
        assert_eq!(
            &out[14..],
            &[0x42, 0, 0, 0, 0, 0, 4, 0x03, seq[0], seq[1], seq[2], seq[3]]
        );
        let mut acks = alloc::vec![(u32::from_be_bytes(seq), c.bytes_received())];
        out.clear();
        // Feed commands the client ignores until the window is crossed again.
        let noise = s.command(
            3,
            0,
            &[Value::str("onBWDone"), Value::Number(0.0), Value::Null],
        );
        let mut fed = c.bytes_received();
        for _ in 0..600 {
            c.handle_input(2001, &noise).unwrap();
            fed += noise.len() as u64;
            c.poll_transmit(&mut out);
            for m in s.read(&out) {
                if m.type_id == msg_type::ACKNOWLEDGEMENT {
                    let seq = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                    acks.push((seq, fed));
                }
            }
            out.clear();
        }
        // One ack per 3000 bytes, each carrying the byte count at the time.
        assert!(acks.len() >= 3, "{acks:?}");
        for (seq, fed) in &acks {
            assert_eq!(u64::from(*seq), *fed);
        }
        for w in acks.windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!((3000..3000 + noise.len() as u32).contains(&gap), "{gap}");
        }
        assert_eq!(c.bytes_received(), fed);
    }

    #[test]
    fn setup_timeout() {
        let cfg = ClientConfig::new("live", "rtmp://h/live", "k");
        let mut c = ClientSession::new(cfg, u32::MAX - 5);
        assert_eq!(c.poll_timeout(), Some(9_994));
        assert_eq!(c.handle_timeout(9_993), Ok(()));
        assert_eq!(
            c.handle_timeout(9_994),
            Err(RtmpError::SetupTimeout(10_000))
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A valid handshake, then every byte split point of some junk.
        let junk: Vec<u8> = (0..600u32).map(|i| (i * 7919 % 251) as u8).collect();
        for cut in [0, 1, 5, 77, 300] {
            let cfg = ClientConfig::new("live", "rtmp://h/live", "k");
            let mut c = ClientSession::new(cfg, 0);
            let mut out = Vec::new();
            c.poll_transmit(&mut out);
            let mut srv = vec![3u8];
            srv.extend_from_slice(&[0u8; PACKET_SIZE]);
            srv.extend_from_slice(&out[1..]);
            c.handle_input(0, &srv).unwrap();
            let _ = c
                .handle_input(1, &junk[..cut])
                .and_then(|_| c.handle_input(2, &junk[cut..]));
        }
    }
}
