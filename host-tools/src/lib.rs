//! Host-side tools for roomcast boxes (the `roomcast-host` binary).
//!
//! * [`url`]: `http://` URLs and reference resolution.
//! * [`http`]: a tiny HTTP/1.1 `GET` client over `std::net`.
//! * [`playlist`]: a strict parser for the box's live HLS playlists.
//! * [`ts_check`]: checks that a segment is whole MPEG-TS.
//! * [`probe`]: `roomcast-host probe`, built from the above.
//! * [`image`]: `roomcast-host image build`, the SD image from Debian
//!   packages (host tools run as subprocesses).
//! * [`flash`]: `roomcast-host flash`, write and verify, with the checks
//!   that keep it off the wrong disk.
//! * [`discover`]: `roomcast-host discover`, mDNS browsing.
//! * [`boxconfig`]: `roomcast-host config get|set`, the box's API.
//! * [`cli`]: the command line.
//!
//! Everything read from the network is parsed and bounded, never trusted:
//! bad input is an error naming what is wrong, never a panic.
#![forbid(unsafe_code)]

pub mod boxconfig;
pub mod cli;
pub mod discover;
pub mod flash;
pub mod http;
pub mod image;
pub mod playlist;
pub mod probe;
pub mod ts_check;
pub mod url;
