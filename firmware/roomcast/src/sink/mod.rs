//! Sinks: everything that takes encoded frames off the bus. The served
//! packagers ([`hls`], [`llhls`]) run for the daemon's whole life; the
//! outputs ([`rtmp`], [`srt`], [`record`]) come and go with the
//! configuration through one framework ([`output`]).

pub mod hls;
pub mod llhls;
pub mod output;
pub mod record;
pub mod rtmp;
pub mod srt;
pub mod tsmux;
