//! RTMP, the publishing (client) side, sans-IO (Adobe, "Real-Time Messaging
//! Protocol (RTMP) specification", version 1.0, December 2012).
//!
//! * [`handshake`]: the simple handshake, C0/C1/C2 and S0/S1/S2 (§5.2).
//! * [`chunk`]: chunk streams (§5.3): a writer with a negotiated chunk size
//!   and format 0/1/3 headers, and a reader of all four formats; both with
//!   extended timestamps (§5.3.1.3).
//! * [`client`]: [`ClientSession`], which runs the conversation of an
//!   encoder publishing one stream: protocol control messages (§5.4), user
//!   control events (§6.2, §7.1.7), the NetConnection and NetStream commands
//!   (§7.2.1.1 `connect`, §7.2.1.3 `createStream`, §7.2.2.6 `publish`, plus
//!   the `releaseStream`/`FCPublish` calls every ingest expects from an
//!   encoder) in AMF0 ([`crate::amf0`]), and FLV tag bodies ([`crate::flv`])
//!   as audio/video/data messages (§7.1.2, §7.1.5).
//! * [`mux`]: the order and timestamps of those messages for a publisher
//!   of H.264 and AAC frames: sequence headers first, one time origin,
//!   each stream's timestamps non-decreasing (§7.1.5).
//!
//! Bytes go in through [`ClientSession::handle_input`], bytes to send come
//! out of [`ClientSession::poll_transmit`], and what happened comes out of
//! [`ClientSession::poll_event`]. The current time is always an argument;
//! nothing here reads a clock or touches a socket. No function panics on any
//! input: the server's bytes are bounds-checked and every limit
//! ([`MAX_MESSAGE`], [`MAX_BUFFERED`], [`MAX_CHUNK_STREAMS`]) is an error,
//! not an allocation.

pub mod chunk;
pub mod client;
pub mod handshake;
pub mod mux;

pub use client::{ClientConfig, ClientSession, Event, State};

use crate::amf0::Amf0Error;

/// Largest message the reader accepts from a server. A publishing client
/// receives only control messages and short commands.
pub const MAX_MESSAGE: u32 = 1 << 20;
/// Most bytes of unfinished messages held across all chunk streams.
pub const MAX_BUFFERED: usize = 2 << 20;
/// Most chunk streams the reader keeps state for.
pub const MAX_CHUNK_STREAMS: usize = 64;

/// Message type ids (§5.4, §7.1).
pub mod msg_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
}

/// Why a session cannot go on. Refusals by the server (`_error`, an
/// `onStatus` with level `error`) are not errors but
/// [`Event::Rejected`](client::Event::Rejected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtmpError {
    #[error("server speaks RTMP version {0}, not 3")]
    UnsupportedVersion(u8),
    #[error("server handshake (S2) does not echo our C1")]
    HandshakeEcho,
    #[error("chunk stream {0} continues a message header it never sent")]
    NoPreviousHeader(u32),
    #[error("message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    MessageTooLarge(u32),
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams at once")]
    TooManyChunkStreams,
    #[error("more than {MAX_BUFFERED} bytes of unfinished messages")]
    TooMuchBuffered,
    #[error("bad chunk size {0}")]
    BadChunkSize(u32),
    #[error("chunk stream id {0} is out of range (2..=65599)")]
    BadChunkStreamId(u32),
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("bad AMF0 in a command: {0}")]
    Amf0(#[from] Amf0Error),
    #[error("createStream answered without a usable stream id")]
    BadStreamId,
    #[error("server closed the stream")]
    ClosedByServer,
    #[error("not publishing")]
    NotPublishing,
    #[error("server did not accept the stream within {0} ms")]
    SetupTimeout(u32),
}
