// dash.js (the pinned npm package) in Debian's headless Chromium plays the
// box's MPEG-DASH stream, on a bare page served from the box's origin, and
// measures what a viewer gets: whether the picture keeps moving, stalls,
// dash.js's own live latency, and the latency from the MPD's clock (now −
// availabilityStartTime − playhead: capture to screen, as the box's
// timeline maps media time to its wall clock).
//
//   node dash.mjs http://127.0.0.1:8080 SECONDS [MAX_LATENCY_S]
//
// Prints one JSON line {seconds, advanced, stalls, width, height, latency:
// {dashjs:{p50,max}, clock:{p50,max}}}. With MAX_LATENCY_S, exits 1 if a
// latency sample after the first 4 s of playback exceeds it, if playback
// stalls or the picture stops moving.
import { launchChromium, sleep, summary } from './player.mjs';
import { fileURLToPath } from 'node:url';

const [base, secondsArg, maxArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
if (!/^https?:\/\/[^/]+$/.test(base || '') || !(seconds > 0)) {
  console.error('usage: node dash.mjs http://127.0.0.1:PORT SECONDS [MAX_LATENCY_S]');
  process.exit(2);
}
const maxLatency = maxArg === undefined ? null : Number(maxArg);
setTimeout(() => {
  console.error('FAIL: did not finish in time');
  process.exit(1);
}, (seconds + 60) * 1000).unref();
const dashjs = fileURLToPath(new URL('./node_modules/dashjs/dist/modern/umd/dash.all.min.js', import.meta.url));

const browser = await launchChromium();
let code = 0;
const fail = (why) => { console.error(`FAIL: ${why}`); code = 1; };
try {
  const page = await browser.newPage();
  // The box's origin (its stream needs no CORS then), a page of our own.
  await page.goto(`${base}/dash/time`);
  await page.setContent('<!doctype html><video id="v" muted autoplay playsinline></video>');
  await page.addScriptTag({ path: dashjs });
  const ast = await page.evaluate(async () => {
    const mpd = await (await fetch('/dash/index.mpd')).text();
    const doc = new DOMParser().parseFromString(mpd, 'application/xml');
    window.stalls = 0;
    window.errors = [];
    const v = document.getElementById('v');
    v.addEventListener('waiting', () => { if (v.currentTime > 0) window.stalls++; });
    const player = dashjs.MediaPlayer().create();
    player.on(dashjs.MediaPlayer.events.ERROR, (e) => window.errors.push(JSON.stringify(e.error || e).slice(0, 300)));
    player.initialize(v, '/dash/index.mpd', true);
    window.player = player;
    return Date.parse(doc.documentElement.getAttribute('availabilityStartTime'));
  });
  const sample = () => page.evaluate((ast) => {
    const v = document.getElementById('v');
    const live = window.player.getCurrentLiveLatency();
    return { t: v.currentTime, stalls: window.stalls, errors: window.errors.length,
      width: v.videoWidth, height: v.videoHeight,
      dashjs: Number.isFinite(live) && live > 0 ? live : null,
      clock: v.currentTime > 0 ? (Date.now() - ast) / 1000 - v.currentTime : null };
  }, ast);
  let s = await sample();
  for (let i = 0; i < 200 && s.t === 0; i++) { await sleep(100); s = await sample(); }
  if (s.t === 0) throw new Error(`playback never started; errors: ${await page.evaluate(() => window.errors.join(' | '))}`);
  await sleep(4000); // dash.js settles on its target latency
  const first = await sample();
  const dashLat = [];
  const clockLat = [];
  let last = first.t;
  let frozen = 0;
  for (let i = 0; i < seconds * 4; i++) {
    await sleep(250);
    s = await sample();
    if (s.dashjs !== null) dashLat.push(s.dashjs);
    if (s.clock !== null) clockLat.push(s.clock);
    frozen = s.t === last ? frozen + 1 : 0;
    if (frozen >= 4) throw new Error(`picture frozen at ${s.t.toFixed(2)} s`);
    last = s.t;
  }
  const result = {
    seconds, advanced: Number((s.t - first.t).toFixed(2)), stalls: s.stalls - first.stalls,
    errors: s.errors, width: s.width, height: s.height,
    latency: { dashjs: summary(dashLat), clock: summary(clockLat) },
  };
  console.log(JSON.stringify(result));
  if (maxLatency !== null) {
    if (result.stalls > 0) fail(`${result.stalls} stall(s)`);
    if (result.advanced < seconds * 0.9) fail(`played ${result.advanced} s in ${seconds} s`);
    if (!result.latency.dashjs || result.latency.dashjs.max > maxLatency) fail(`dash.js latency ${JSON.stringify(result.latency.dashjs)} over ${maxLatency} s`);
    if (!result.latency.clock || result.latency.clock.max > maxLatency) fail(`clock latency ${JSON.stringify(result.latency.clock)} over ${maxLatency} s`);
    if (result.errors) fail(`dash.js errors: ${await page.evaluate(() => window.errors.join(' | '))}`);
  }
} catch (e) {
  fail(e.message);
} finally {
  await browser.close();
}
process.exit(code);
