//! The box's status LED (a tally light) and its reset button.
//!
//! The logic is written against `embedded-hal` 1.0's digital traits and
//! takes the time as an argument, so it runs unchanged on a fake pin in the
//! tests and on Linux GPIO character devices on the box:
//!
//! * [`Led`] shows a [`Tally`] state as a blink pattern ([`Tally::lit_at`]):
//!   idle is a short blip every two seconds, live is steady on, error blinks
//!   four times a second.
//! * [`LongPress`] debounces the button and reports [`ButtonEvent::Reset`]
//!   once per hold of [`RESET_HOLD_MS`]; a button already held when the
//!   daemon starts (stuck, or a line without its pull-up) must be released
//!   once before it can trigger anything.
//! * [`TallyWatch`] turns the pipeline's and outputs' state into a [`Tally`].
//! * [`run_loop`] ties them together on one thread; [`start`] opens the
//!   board's lines (Linux only, when the profile names them and the chip
//!   exists) and runs it against the daemon.
//!
//! The reset removes the admin password and API tokens (`Auth::reset`, which
//! also ends every session) and restores the default configuration (with
//! the board's video profile), saved atomically like any other change, and
//! logs both. Network settings are not managed by roomcast yet; when they
//! are, their reset belongs in the same hook.

use crate::base::clock::Clock;
use crate::config::board::Board;
use crate::control::app::App;
use embedded_hal::digital::{InputPin, OutputPin};
use std::sync::Arc;

/// How long the button must be held to reset, in milliseconds.
pub const RESET_HOLD_MS: u64 = 10_000;
/// How long a level must be stable before it counts (contact bounce).
pub const DEBOUNCE_MS: u64 = 50;
/// How often [`run_loop`] polls the button and updates the LED.
pub const POLL_MS: u64 = 20;
/// How often [`run_loop`] asks for the tally state.
pub const TALLY_EVERY_MS: u64 = 250;
/// No encoded frame for this long is an error.
pub const STALL_MS: u64 = 3_000;

/// What the status LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Encoding and serving HLS on the LAN; no upstream output on air.
    Idle,
    /// At least one upstream output is publishing.
    Live,
    /// The encoder stalled or an output is failing.
    Error,
}

impl Tally {
    /// (milliseconds lit, period in milliseconds) of the pattern.
    const fn pattern(self) -> (u64, u64) {
        match self {
            Tally::Idle => (100, 2000),
            Tally::Live => (1, 1),
            Tally::Error => (125, 250),
        }
    }

    /// Whether the LED is lit `ms` after the state was entered (each state
    /// starts lit, so a change shows at once).
    pub fn lit_at(self, ms: u64) -> bool {
        let (on, period) = self.pattern();
        ms % period < on
    }

    /// Milliseconds after entering the state at which the LED next changes,
    /// counted from `ms`; `None` when it never does (steady).
    pub fn next_change_after(self, ms: u64) -> Option<u64> {
        let (on, period) = self.pattern();
        if on >= period {
            return None;
        }
        let phase = ms % period;
        Some(ms - phase + if phase < on { on } else { period })
    }
}

/// A status LED showing a [`Tally`] pattern.
pub struct Led<P> {
    pin: P,
    active_low: bool,
    tally: Tally,
    since_ms: u64,
    /// What the pin was last set to; `None` before the first write or
    /// after a failed one, so the next update writes again.
    lit: Option<bool>,
}

impl<P: OutputPin> Led<P> {
    pub fn new(pin: P, active_low: bool, now_ms: u64) -> Self {
        Led {
            pin,
            active_low,
            tally: Tally::Idle,
            since_ms: now_ms,
            lit: None,
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Switches to `tally`; the pattern restarts only on a change.
    pub fn set(&mut self, tally: Tally, now_ms: u64) {
        if tally != self.tally {
            self.tally = tally;
            self.since_ms = now_ms;
        }
    }

    /// Drives the pin for `now_ms`; writes only when the level changes.
    pub fn update(&mut self, now_ms: u64) -> Result<(), P::Error> {
        let on = self.tally.lit_at(now_ms.saturating_sub(self.since_ms));
        if self.lit == Some(on) {
            return Ok(());
        }
        self.lit = None;
        if on != self.active_low {
            self.pin.set_high()?;
        } else {
            self.pin.set_low()?;
        }
        self.lit = Some(on);
        Ok(())
    }

    /// When the LED next needs [`Led::update`], in the caller's milliseconds.
    pub fn next_change_ms(&self, now_ms: u64) -> Option<u64> {
        let ms = now_ms.saturating_sub(self.since_ms);
        self.tally.next_change_after(ms).map(|t| self.since_ms + t)
    }

    pub fn release(self) -> P {
        self.pin
    }
}

/// What the button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonEvent {
    /// Held for [`RESET_HOLD_MS`]: reset password and network settings.
    Reset,
}

/// Long-press detector: debounced, one event per hold, time passed in.
#[derive(Debug, Clone)]
pub struct LongPress {
    hold_ms: u64,
    debounce_ms: u64,
    /// Last raw reading and when it started.
    raw: Option<(bool, u64)>,
    /// Debounced state: pressed, and since when.
    stable: Option<(bool, u64)>,
    /// A release has been seen, so a press can count.
    armed: bool,
    /// This hold has already fired.
    fired: bool,
}

impl LongPress {
    pub fn new(hold_ms: u64, debounce_ms: u64) -> Self {
        LongPress {
            hold_ms,
            debounce_ms,
            raw: None,
            stable: None,
            armed: false,
            fired: false,
        }
    }

    /// Feeds one reading (`pressed`, logical) taken at `now_ms`.
    pub fn update(&mut self, pressed: bool, now_ms: u64) -> Option<ButtonEvent> {
        match self.raw {
            Some((level, _)) if level == pressed => {}
            _ => self.raw = Some((pressed, now_ms)),
        }
        let (level, raw_since) = self.raw?;
        let settled = now_ms.saturating_sub(raw_since) >= self.debounce_ms;
        if settled && self.stable.map(|(l, _)| l) != Some(level) {
            self.stable = Some((level, raw_since));
            if level {
                self.fired = false;
            } else {
                self.armed = true;
            }
        }
        match self.stable {
            Some((true, since))
                if self.armed && !self.fired && now_ms.saturating_sub(since) >= self.hold_ms =>
            {
                self.fired = true;
                Some(ButtonEvent::Reset)
            }
            _ => None,
        }
    }

    /// How long the current (debounced, armed) press has lasted.
    pub fn held_ms(&self, now_ms: u64) -> Option<u64> {
        match self.stable {
            Some((true, since)) if self.armed => Some(now_ms.saturating_sub(since)),
            _ => None,
        }
    }
}

/// A button on an input pin.
pub struct Button<P> {
    pin: P,
    active_low: bool,
    detector: LongPress,
}

impl<P: InputPin> Button<P> {
    pub fn new(pin: P, active_low: bool) -> Self {
        Button {
            pin,
            active_low,
            detector: LongPress::new(RESET_HOLD_MS, DEBOUNCE_MS),
        }
    }

    /// Reads the pin and feeds the detector.
    pub fn poll(&mut self, now_ms: u64) -> Result<Option<ButtonEvent>, P::Error> {
        let pressed = self.pin.is_high()? != self.active_low;
        Ok(self.detector.update(pressed, now_ms))
    }
}

/// Output states in `/api/status` (RTMP: `rtmp.rs`, SRT: `srt/`) that mean
/// "on air" and "failing".
const LIVE_STATES: [&str; 3] = ["publishing", "sending", "connected"];
const ERROR_STATES: [&str; 4] = ["backoff", "rejected", "failed", "error"];

/// Derives the tally from the encoder's frame counter and the outputs'
/// states.
#[derive(Debug, Clone)]
pub struct TallyWatch {
    encoded: u64,
    advanced_ms: u64,
}

impl TallyWatch {
    pub fn new(encoded: u64, now_ms: u64) -> Self {
        TallyWatch {
            encoded,
            advanced_ms: now_ms,
        }
    }

    /// Error if no frame was encoded for [`STALL_MS`] or an output is
    /// failing; else live if an output is publishing; else idle.
    pub fn update<'a>(
        &mut self,
        now_ms: u64,
        encoded: u64,
        output_states: impl IntoIterator<Item = &'a str>,
    ) -> Tally {
        if encoded != self.encoded {
            self.encoded = encoded;
            self.advanced_ms = now_ms;
        }
        let states: Vec<&str> = output_states.into_iter().collect();
        if now_ms.saturating_sub(self.advanced_ms) > STALL_MS
            || states.iter().any(|s| ERROR_STATES.contains(s))
        {
            Tally::Error
        } else if states.iter().any(|s| LIVE_STATES.contains(s)) {
            Tally::Live
        } else {
            Tally::Idle
        }
    }
}

fn now_ms(clock: &dyn Clock) -> u64 {
    clock.monotonic_ns() / 1_000_000
}

/// Polls the button and updates the LED every [`POLL_MS`], asking `tally`
/// for the state every [`TALLY_EVERY_MS`] and calling `on_reset` once per
/// long press. Pin errors are logged once per kind of pin and otherwise
/// ignored (a broken LED must not stop the button, nor the daemon).
/// Returns when `until_ms` (test use) is reached; never when it is `None`.
pub fn run_loop<L: OutputPin, B: InputPin>(
    mut led: Option<Led<L>>,
    mut button: Option<Button<B>>,
    clock: &dyn Clock,
    mut tally: impl FnMut(u64) -> Tally,
    mut on_reset: impl FnMut(),
    until_ms: Option<u64>,
) {
    let mut next_tally = 0;
    let (mut led_failed, mut button_failed) = (false, false);
    loop {
        let now = now_ms(clock);
        if until_ms.is_some_and(|u| now >= u) {
            return;
        }
        if let Some(b) = &mut button {
            match b.poll(now) {
                Ok(Some(ButtonEvent::Reset)) => on_reset(),
                Ok(None) => {}
                Err(e) if !button_failed => {
                    button_failed = true;
                    eprintln!("roomcast: cannot read the button: {e:?}");
                }
                Err(_) => {}
            }
        }
        if let Some(l) = &mut led {
            if now >= next_tally {
                l.set(tally(now), now);
                next_tally = now + TALLY_EVERY_MS;
            }
            if let Err(e) = l.update(now) {
                if !led_failed {
                    led_failed = true;
                    eprintln!("roomcast: cannot drive the status LED: {e:?}");
                }
            }
        }
        clock.sleep_until((now + POLL_MS) * 1_000_000);
    }
}

/// Opens the board's status LED and button and drives them from `app` on a
/// thread. Returns `None` (and logs why, when the board has lines) when
/// there is nothing to drive: no lines in the profile, not Linux, or the
/// chip is not there.
pub fn start(board: &Board, app: Arc<App>) -> Option<std::thread::JoinHandle<()>> {
    let gpio = board.profile.as_ref()?.gpio.clone();
    if gpio.status_led.is_none() && gpio.button.is_none() {
        return None;
    }
    let (led, button) = linux::open(board.name(), &gpio)?;
    let clock = app.clock.clone();
    let reset_to = board.default_config();
    let spawned = std::thread::Builder::new()
        .name("gpio".into())
        .spawn(move || {
            let start = now_ms(clock.as_ref());
            // The status API's view: frames encoded, and every output's
            // state (RTMP and SRT alike).
            let encoded = |s: &serde_json::Value| s["frames"]["encoded"].as_u64().unwrap_or(0);
            let mut watch = TallyWatch::new(encoded(&app.status_json()), start);
            let tally = |now| {
                let s = app.status_json();
                let states = s["outputs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o["state"].as_str());
                watch.update(now, encoded(&s), states)
            };
            let on_reset = || {
                eprintln!(
                    "roomcast: button held {} s: removing the admin password and API tokens, \
                     restoring the default configuration (network settings are not managed \
                     by roomcast yet)",
                    RESET_HOLD_MS / 1000
                );
                match app.auth.reset() {
                    Ok(code) => {
                        eprintln!("roomcast: admin password removed; the page asks for a new one");
                        crate::control::auth::print_setup_code(&code);
                    }
                    Err(e) => eprintln!("roomcast: cannot remove the admin password: {e}"),
                }
                let patch = serde_json::to_value(&reset_to).unwrap_or_default();
                match app.put_config(patch) {
                    Ok(()) => eprintln!("roomcast: default configuration restored and saved"),
                    Err(e) => eprintln!("roomcast: reset failed: {e}"),
                }
            };
            run_loop(led, button, clock.as_ref(), tally, on_reset, None);
        });
    match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("roomcast: cannot start the GPIO thread: {e}");
            None
        }
    }
}

/// Linux GPIO character devices (`/dev/gpiochipN`) through `gpio-cdev`,
/// found by chip label.
#[cfg(target_os = "linux")]
pub mod linux {
    use super::{Button, Led};
    use crate::config::board::{Bias, Gpio, GpioLine};
    use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin};
    use gpio_cdev::{Chip, LineHandle, LineRequestFlags};

    /// Consumer name the kernel shows for our lines (`gpioinfo`).
    const CONSUMER: &str = "roomcast";

    // GPIOHANDLE_REQUEST_BIAS_* of the kernel's v1 GPIO uAPI (Linux 5.5+),
    // which gpio-cdev 0.6 passes through but does not name.
    const BIAS_PULL_UP: u32 = 1 << 5;
    const BIAS_PULL_DOWN: u32 = 1 << 6;
    const BIAS_DISABLE: u32 = 1 << 7;

    /// A requested line; reads and writes the electrical level (active-low
    /// is handled by [`Led`] and [`Button`]).
    pub struct CdevPin {
        handle: LineHandle,
    }

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    pub struct PinError(#[from] gpio_cdev::Error);

    impl embedded_hal::digital::Error for PinError {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    impl ErrorType for CdevPin {
        type Error = PinError;
    }

    impl OutputPin for CdevPin {
        fn set_low(&mut self) -> Result<(), PinError> {
            Ok(self.handle.set_value(0)?)
        }
        fn set_high(&mut self) -> Result<(), PinError> {
            Ok(self.handle.set_value(1)?)
        }
    }

    impl InputPin for CdevPin {
        fn is_high(&mut self) -> Result<bool, PinError> {
            Ok(self.handle.get_value()? != 0)
        }
        fn is_low(&mut self) -> Result<bool, PinError> {
            Ok(self.handle.get_value()? == 0)
        }
    }

    /// Why a line could not be opened.
    #[derive(Debug, thiserror::Error)]
    pub enum GpioError {
        #[error("no GPIO chip labelled {0:?}")]
        NoChip(String),
        #[error("GPIO chip {chip:?} line {line}: {source}")]
        Line {
            chip: String,
            line: u32,
            source: gpio_cdev::Error,
        },
    }

    fn find_chip(label: &str) -> Result<Chip, GpioError> {
        gpio_cdev::chips()
            .into_iter()
            .flatten()
            .flatten()
            .find(|c| c.label() == label)
            .ok_or_else(|| GpioError::NoChip(label.to_string()))
    }

    fn request(l: &GpioLine, flags: LineRequestFlags, default: u8) -> Result<CdevPin, GpioError> {
        let err = |source| GpioError::Line {
            chip: l.chip.clone(),
            line: l.line,
            source,
        };
        let line = find_chip(&l.chip)?.get_line(l.line).map_err(err)?;
        let handle = line.request(flags, default, CONSUMER).map_err(err)?;
        Ok(CdevPin { handle })
    }

    /// The LED as an output, initially dark.
    pub fn open_output(l: &GpioLine) -> Result<CdevPin, GpioError> {
        request(l, LineRequestFlags::OUTPUT, u8::from(l.active_low))
    }

    /// The button as an input with the profile's bias. A kernel older than
    /// 5.5 refuses bias flags; then the line is opened without (the
    /// firmware's or the device tree's pull then applies).
    pub fn open_input(l: &GpioLine) -> Result<CdevPin, GpioError> {
        let bias = match l.bias {
            Some(Bias::PullUp) => BIAS_PULL_UP,
            Some(Bias::PullDown) => BIAS_PULL_DOWN,
            Some(Bias::Disabled) => BIAS_DISABLE,
            None => 0,
        };
        let with_bias = LineRequestFlags::from_bits_retain(LineRequestFlags::INPUT.bits() | bias);
        request(l, with_bias, 0).or_else(|e| match e {
            GpioError::Line { .. } if bias != 0 => {
                eprintln!("roomcast: {e}; opening the button without bias");
                request(l, LineRequestFlags::INPUT, 0)
            }
            e => Err(e),
        })
    }

    /// The status LED and the button, each when it could be opened.
    pub type Lines = (Option<Led<CdevPin>>, Option<Button<CdevPin>>);

    /// Opens what the profile names; a line that cannot be opened is logged
    /// and left out. `None` when nothing could be opened.
    pub fn open(board: &str, gpio: &Gpio) -> Option<Lines> {
        let now = 0; // the LED's pattern phase; run_loop sets the state at once
        let led = gpio.status_led.as_ref().and_then(|l| {
            open_output(l)
                .map(|p| Led::new(p, l.active_low, now))
                .map_err(|e| eprintln!("roomcast: board {board}: no status LED: {e}"))
                .ok()
        });
        let button = gpio.button.as_ref().and_then(|l| {
            open_input(l)
                .map(|p| Button::new(p, l.active_low))
                .map_err(|e| eprintln!("roomcast: board {board}: no reset button: {e}"))
                .ok()
        });
        if led.is_none() && button.is_none() {
            return None;
        }
        Some((led, button))
    }
}

/// Elsewhere there are no GPIO character devices.
#[cfg(not(target_os = "linux"))]
pub mod linux {
    use super::{Button, Led};
    use crate::config::board::Gpio;

    pub type CdevPin = NoPin;

    /// A pin that does not exist; never constructed.
    pub enum NoPin {}

    impl embedded_hal::digital::ErrorType for NoPin {
        type Error = core::convert::Infallible;
    }
    impl embedded_hal::digital::OutputPin for NoPin {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            match *self {}
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            match *self {}
        }
    }
    impl embedded_hal::digital::InputPin for NoPin {
        fn is_high(&mut self) -> Result<bool, Self::Error> {
            match *self {}
        }
        fn is_low(&mut self) -> Result<bool, Self::Error> {
            match *self {}
        }
    }

    pub type Lines = (Option<Led<NoPin>>, Option<Button<NoPin>>);

    pub fn open(board: &str, _: &Gpio) -> Option<Lines> {
        eprintln!("roomcast: board {board}: GPIO needs Linux; no status LED or button");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::SimClock;
    use embedded_hal::digital::{ErrorKind, ErrorType};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// A fake output pin: records every level written.
    #[derive(Default, Clone)]
    struct FakeOut {
        writes: Rc<RefCell<Vec<bool>>>,
        fail: Rc<RefCell<bool>>,
    }

    #[derive(Debug)]
    struct FakeError;
    impl embedded_hal::digital::Error for FakeError {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }
    impl ErrorType for FakeOut {
        type Error = FakeError;
    }
    impl OutputPin for FakeOut {
        fn set_low(&mut self) -> Result<(), FakeError> {
            self.write(false)
        }
        fn set_high(&mut self) -> Result<(), FakeError> {
            self.write(true)
        }
    }
    impl FakeOut {
        fn write(&self, level: bool) -> Result<(), FakeError> {
            if *self.fail.borrow() {
                return Err(FakeError);
            }
            self.writes.borrow_mut().push(level);
            Ok(())
        }
        fn level(&self) -> Option<bool> {
            self.writes.borrow().last().copied()
        }
    }

    /// A fake input pin whose level is set by the test.
    #[derive(Default, Clone)]
    struct FakeIn(Rc<RefCell<bool>>);
    impl ErrorType for FakeIn {
        type Error = FakeError;
    }
    impl InputPin for FakeIn {
        fn is_high(&mut self) -> Result<bool, FakeError> {
            Ok(*self.0.borrow())
        }
        fn is_low(&mut self) -> Result<bool, FakeError> {
            Ok(!*self.0.borrow())
        }
    }

    /// The LED's level at each 5 ms step from `from` to `to`.
    fn trace(led: &mut Led<FakeOut>, pin: &FakeOut, from: u64, to: u64) -> Vec<(u64, bool)> {
        (from..to)
            .step_by(5)
            .map(|t| {
                led.update(t).unwrap();
                (t, pin.level().unwrap())
            })
            .collect()
    }

    /// Lit intervals [start, end) in a trace.
    fn lit_spans(t: &[(u64, bool)]) -> Vec<(u64, u64)> {
        let mut spans = Vec::new();
        let mut start = None;
        for &(ms, on) in t {
            match (on, start) {
                (true, None) => start = Some(ms),
                (false, Some(s)) => {
                    spans.push((s, ms));
                    start = None;
                }
                _ => {}
            }
        }
        if let (Some(s), Some(&(end, _))) = (start, t.last()) {
            spans.push((s, end + 5));
        }
        spans
    }

    #[test]
    fn idle_is_a_blip_every_two_seconds() {
        let pin = FakeOut::default();
        let mut led = Led::new(pin.clone(), false, 1000);
        let t = trace(&mut led, &pin, 1000, 7000);
        assert_eq!(lit_spans(&t), [(1000, 1100), (3000, 3100), (5000, 5100)]);
        // Only level changes are written: 3 on, 3 off.
        assert_eq!(pin.writes.borrow().len(), 6);
    }

    #[test]
    fn live_is_steady_and_error_blinks_at_4_hz() {
        let pin = FakeOut::default();
        let mut led = Led::new(pin.clone(), false, 0);
        led.set(Tally::Live, 0);
        let t = trace(&mut led, &pin, 0, 5000);
        assert!(t.iter().all(|&(_, on)| on));
        assert_eq!(*pin.writes.borrow(), [true]);

        led.set(Tally::Error, 5000);
        let t = trace(&mut led, &pin, 5000, 6000);
        assert_eq!(
            lit_spans(&t),
            [(5000, 5125), (5250, 5375), (5500, 5625), (5750, 5875)]
        );
        // Setting the same state again does not restart the pattern.
        led.set(Tally::Error, 6010);
        assert_eq!(led.next_change_ms(6010), Some(6125));
        assert_eq!(led.tally(), Tally::Error);
    }

    #[test]
    fn active_low_inverts_the_pin_and_a_state_change_shows_at_once() {
        let pin = FakeOut::default();
        let mut led = Led::new(pin.clone(), true, 0);
        led.update(0).unwrap();
        assert_eq!(pin.level(), Some(false)); // lit = driven low
        led.update(500).unwrap();
        assert_eq!(pin.level(), Some(true)); // dark = driven high
        led.set(Tally::Error, 700);
        led.update(700).unwrap();
        assert_eq!(pin.level(), Some(false));
    }

    #[test]
    fn a_failed_write_is_retried() {
        let pin = FakeOut::default();
        let mut led = Led::new(pin.clone(), false, 0);
        *pin.fail.borrow_mut() = true;
        assert!(led.update(0).is_err());
        *pin.fail.borrow_mut() = false;
        led.update(10).unwrap();
        assert_eq!(*pin.writes.borrow(), [true]);
    }

    #[test]
    fn next_change_follows_the_pattern() {
        assert_eq!(Tally::Idle.next_change_after(0), Some(100));
        assert_eq!(Tally::Idle.next_change_after(100), Some(2000));
        assert_eq!(Tally::Idle.next_change_after(2050), Some(2100));
        assert_eq!(Tally::Error.next_change_after(130), Some(250));
        assert_eq!(Tally::Live.next_change_after(12345), None);
    }

    /// Feeds `pressed` from `from` to `to` in 10 ms steps; returns the times
    /// of the events.
    fn hold(d: &mut LongPress, pressed: bool, from: u64, to: u64) -> Vec<u64> {
        (from..to)
            .step_by(10)
            .filter(|&t| d.update(pressed, t).is_some())
            .collect()
    }

    #[test]
    fn short_presses_are_ignored() {
        let mut d = LongPress::new(RESET_HOLD_MS, DEBOUNCE_MS);
        let mut t = 0;
        assert!(hold(&mut d, false, t, 1000).is_empty());
        t = 1000;
        for press_ms in [100, 2_000, 9_900] {
            assert!(hold(&mut d, true, t, t + press_ms).is_empty());
            t += press_ms;
            assert!(hold(&mut d, false, t, t + 500).is_empty());
            t += 500;
        }
    }

    #[test]
    fn a_long_hold_resets_exactly_once_and_the_next_hold_again() {
        let mut d = LongPress::new(RESET_HOLD_MS, DEBOUNCE_MS);
        assert!(hold(&mut d, false, 0, 1000).is_empty());
        // Held for 30 s: one event, 10 s after the press began.
        assert_eq!(hold(&mut d, true, 1000, 31_000), [11_000]);
        assert_eq!(d.held_ms(31_000), Some(30_000));
        assert!(hold(&mut d, false, 31_000, 32_000).is_empty());
        assert_eq!(d.held_ms(32_000), None);
        assert_eq!(hold(&mut d, true, 32_000, 45_000), [42_000]);
    }

    #[test]
    fn bounces_neither_start_nor_end_a_hold() {
        let mut d = LongPress::new(RESET_HOLD_MS, DEBOUNCE_MS);
        assert!(hold(&mut d, false, 0, 500).is_empty());
        let mut events = Vec::new();
        // A press that chatters for its first 30 ms, then a 20 ms dropout
        // in the middle of the hold: still one hold, one event.
        for t in (500..12_000).step_by(10) {
            let chatter = t < 530 && (t / 10) % 2 == 1;
            let dropout = (5_000..5_020).contains(&t);
            if d.update(!chatter && !dropout, t).is_some() {
                events.push(t);
            }
        }
        // The hold counts from the last bounce (520 ms), not the first touch.
        assert_eq!(events, [10_520]);
        // Chatter alone (never 50 ms stable) is not a press.
        let mut d = LongPress::new(RESET_HOLD_MS, DEBOUNCE_MS);
        hold(&mut d, false, 0, 500);
        let chattering: Vec<u64> = (500..20_000)
            .step_by(10)
            .filter(|&t| d.update((t / 20) % 2 == 0, t).is_some())
            .collect();
        assert!(chattering.is_empty());
    }

    #[test]
    fn a_button_held_at_start_must_be_released_first() {
        let mut d = LongPress::new(RESET_HOLD_MS, DEBOUNCE_MS);
        // Stuck low from boot (e.g. no pull-up): never a reset.
        assert!(hold(&mut d, true, 0, 60_000).is_empty());
        assert!(hold(&mut d, false, 60_000, 61_000).is_empty());
        assert_eq!(hold(&mut d, true, 61_000, 72_000), [71_000]);
    }

    #[test]
    fn button_reads_active_low_pins() {
        let level = FakeIn::default(); // low = pressed with active_low
        *level.0.borrow_mut() = true;
        let mut b = Button::new(level.clone(), true);
        for t in (0..1000).step_by(10) {
            assert_eq!(b.poll(t).unwrap(), None);
        }
        *level.0.borrow_mut() = false;
        let events: Vec<u64> = (1000..12_000)
            .step_by(10)
            .filter(|&t| b.poll(t).unwrap().is_some())
            .collect();
        assert_eq!(events, [11_000]);
    }

    #[test]
    fn tally_follows_encoder_and_outputs() {
        let mut w = TallyWatch::new(0, 0);
        assert_eq!(w.update(100, 3, []), Tally::Idle);
        assert_eq!(w.update(200, 6, ["connecting"]), Tally::Idle);
        assert_eq!(w.update(300, 9, ["publishing", "disabled"]), Tally::Live);
        assert_eq!(w.update(350, 10, ["listening", "sending"]), Tally::Live);
        assert_eq!(w.update(400, 12, ["publishing", "backoff"]), Tally::Error);
        assert_eq!(w.update(500, 15, ["rejected"]), Tally::Error);
        // The encoder stops: error once STALL_MS has passed without a frame.
        assert_eq!(w.update(500 + STALL_MS, 15, ["publishing"]), Tally::Live);
        assert_eq!(w.update(501 + STALL_MS, 15, ["publishing"]), Tally::Error);
        assert_eq!(w.update(600 + STALL_MS, 16, ["publishing"]), Tally::Live);
    }

    /// A button pin that reads "pressed" between two times on a clock.
    struct TimedButton {
        clock: Arc<SimClock>,
        pressed_ms: (u64, u64),
    }
    impl ErrorType for TimedButton {
        type Error = FakeError;
    }
    impl InputPin for TimedButton {
        fn is_high(&mut self) -> Result<bool, FakeError> {
            let now = self.clock.monotonic_ns() / 1_000_000;
            // Active low: pressed reads low.
            Ok(!(self.pressed_ms.0..self.pressed_ms.1).contains(&now))
        }
        fn is_low(&mut self) -> Result<bool, FakeError> {
            self.is_high().map(|h| !h)
        }
    }

    #[test]
    fn run_loop_drives_the_led_and_resets_once_on_a_simulated_clock() {
        let clock = Arc::new(SimClock::new(0));
        let pin = FakeOut::default();
        let led = Led::new(pin.clone(), false, 0);
        let button = Button::new(
            TimedButton {
                clock: clock.clone(),
                pressed_ms: (2_000, 25_000),
            },
            true,
        );
        let resets = RefCell::new(Vec::new());
        let live = AtomicBool::new(false);
        run_loop(
            Some(led),
            Some(button),
            clock.as_ref(),
            |now| {
                if now >= 29_000 {
                    live.store(true, Ordering::Relaxed);
                    Tally::Live
                } else {
                    Tally::Idle
                }
            },
            || resets.borrow_mut().push(clock.monotonic_ns() / 1_000_000),
            Some(40_000),
        );
        // One reset, within one poll of 10 s after the press.
        let r = resets.into_inner();
        assert_eq!(r.len(), 1, "{r:?}");
        assert!((12_000..12_000 + 2 * POLL_MS).contains(&r[0]), "{r:?}");
        assert!(live.load(Ordering::Relaxed));
        // Idle blips until 29 s (one per 2 s from 0 to 28 s: 15 on + 15
        // off), then steady on.
        let writes = pin.writes.borrow();
        assert_eq!(writes.len(), 31, "{writes:?}");
        assert_eq!(writes.last(), Some(&true));
        clock.advance(Duration::from_millis(1)); // the clock is still usable
    }
}
