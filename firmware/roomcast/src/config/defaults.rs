//! A board profile's defaults applied to a configuration. Kept apart from
//! [`super::board`] so the profiles do not depend on the configuration they
//! fill in.

use super::board::Board;
use super::Config;
use std::collections::BTreeSet;

impl Board {
    /// `cfg` with the profile's default video profile filled in for the
    /// settings the stored file leaves out (`explicit` holds the top-level
    /// keys the file sets: a `video` table there keeps every `[video]`
    /// value, likewise `source` and `encoder`). A source or encoder the
    /// daemon cannot use yet (V4L2) is skipped, with a note saying so; the
    /// notes are for the log.
    pub fn apply_defaults(
        &self,
        cfg: Config,
        explicit: &BTreeSet<String>,
    ) -> (Config, Vec<String>) {
        let mut notes = Vec::new();
        let Some(p) = &self.profile else {
            return (cfg, notes);
        };
        let mut c = cfg.clone();
        if !explicit.contains("video") {
            let v = &p.video;
            c.video.width = v.width;
            c.video.height = v.height;
            c.video.fps = v.fps;
            c.video.bitrate_kbps = v.bitrate_kbps;
            c.video.gop = v.gop;
        }
        if !explicit.contains("ladder") && p.video.ladder.is_some() {
            c.ladder = p.video.ladder.clone();
        }
        if !explicit.contains("source") {
            if accepts(&c, "source", |c| c.source = p.video.source.clone()) {
                c.source = p.video.source.clone();
            } else {
                notes.push(format!(
                    "board {}: default source {:?} is not supported yet; using {:?}",
                    p.name, p.video.source, c.source
                ));
            }
        }
        if !explicit.contains("encoder") {
            let choices = std::iter::once(&p.encoder.default).chain(p.encoder.fallback.as_ref());
            match choices
                .clone()
                .find(|e| accepts(&c, "encoder", |c| c.encoder = (*e).clone()))
            {
                Some(e) => c.encoder = e.clone(),
                None => notes.push(format!(
                    "board {}: default encoder {:?} is not supported yet; using {:?}",
                    p.name, p.encoder.default, c.encoder
                )),
            }
        }
        // The built-in profiles are tested to be valid; should one not be,
        // the configuration as it was is the safe answer.
        match c.clone().validate() {
            Ok(_) => (c, notes),
            Err(e) => {
                notes.push(format!("board {}: defaults not used: {e}", p.name));
                (cfg, notes)
            }
        }
    }

    /// The configuration a reset restores: the built-in defaults with this
    /// board's video profile.
    pub fn default_config(&self) -> Config {
        self.apply_defaults(Config::default(), &BTreeSet::new()).0
    }
}

/// Whether `change` applied to `c` leaves `field` valid (other fields may
/// still be wrong; they are not this check's business).
fn accepts(c: &Config, field: &str, change: impl FnOnce(&mut Config)) -> bool {
    let mut t = c.clone();
    change(&mut t);
    match t.validate() {
        Ok(_) => true,
        Err(e) => e.field != field,
    }
}
