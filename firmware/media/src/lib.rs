//! Sans-IO media core of roomcast.
//!
//! Everything here turns bytes and timestamps into bytes and decisions; nothing
//! reads a clock, a socket or a file, so the same code runs in the daemon, in
//! tests, under a fuzzer and on bare metal (`--no-default-features`, which
//! needs only `alloc`).
//!
//! * [`time`]: the 90 kHz media clock shared by MPEG-TS, H.264 and HLS.
//! * [`h264`]: Annex-B splitting and SPS parsing (ISO/IEC 14496-10).
//! * [`aac`]: AudioSpecificConfig and ADTS framing (ISO/IEC 14496-3).
//! * [`ts`]: an MPEG-TS muxer for one H.264 stream and optionally one AAC
//!   stream (ISO/IEC 13818-1).
//! * [`hls`]: a live media playlist, the multivariant playlist and a
//!   keyframe segmenter (RFC 8216).
//! * [`fmp4`]: fragmented MP4 / CMAF init segments and movie fragments
//!   (ISO/IEC 14496-12, -15; ISO/IEC 23000-19).
//! * [`llhls`]: the low-latency HLS playlist and blocking-reload decisions
//!   (draft-pantos-hls-rfc8216bis).
//! * [`dash`]: the dynamic MPEG-DASH MPD over the same CMAF segments
//!   (ISO/IEC 23009-1, DASH-IF low-latency).
//! * [`aes128`]: HLS `METHOD=AES-128` segment encryption and its
//!   `EXT-X-KEY` tag (RFC 8216 §4.3.2.4, §5.2).
//! * [`amf0`], [`flv`], [`rtmp`]: AMF0 values, FLV tags and a sans-IO RTMP
//!   publishing client (Adobe's AMF0, FLV 10.1 and RTMP 1.0 specifications).
//! * [`setup_code`]: the first-start setup code and its file, which the
//!   daemon and `roomcast-host` must agree on.
//!
//! Panics: none of the public functions panic on any input; untrusted bytes
//! are read with bounds checks and malformed data becomes an error or is
//! skipped, as each function documents.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod aac;
pub mod aes128;
pub mod amf0;
pub mod dash;
pub mod flv;
pub mod fmp4;
pub mod h264;
pub mod hls;
pub mod llhls;
pub mod rtmp;
pub mod setup_code;
pub mod time;
pub mod ts;
