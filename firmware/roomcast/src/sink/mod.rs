//! Sinks: everything that takes encoded frames off the bus. The served
//! packagers ([`hls`], [`llhls`]), one set per rendition ([`served`]), run
//! for the daemon's whole life; the
//! outputs ([`rtmp`], [`srt`], [`record`]) come and go with the
//! configuration through one framework ([`output`]).

pub mod hls;
pub mod keys;
pub mod llhls;
pub mod output;
pub mod record;
pub mod rtmp;
pub mod served;
pub mod srt;
pub mod tsmux;

use crate::base::bus::FrameBus;
use crate::base::clock::SharedClock;
use output::{Manager, Outputs};
use std::path::Path;
use std::sync::Arc;

/// Every output kind, one line each: a new kind is a module and a line here.
pub fn outputs(bus: &Arc<FrameBus>, clock: &SharedClock, data_dir: &Path) -> Outputs {
    Outputs::new(vec![
        Manager::boxed(rtmp::Rtmp::default(), bus, clock),
        Manager::boxed(srt::Srt::default(), bus, clock),
        Manager::boxed(record::Record::new(data_dir), bus, clock),
    ])
}
