// Watches hls.js in Debian's headless Chromium play one of the box's
// playlists through the box's own page, and measures what a viewer gets:
// whether the picture keeps moving, stalls, and the live latency hls.js
// reports (hls.latency: seconds between the live edge and the playhead).
//
//   node latency.mjs http://127.0.0.1:8080 /hls/index.m3u8 20 [MAX_LATENCY_S]
//
// Prints one JSON line {playlist, seconds, advanced, stalls, latency:{p50,max}}.
// With MAX_LATENCY_S, exits 1 if any latency sample after the first 4 s of
// playback exceeds it, if playback stalls, or if the picture stops moving.
import { launchChromium, sleep, summary } from './player.mjs';

const [base, playlist, secondsArg, maxArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
if (!/^https?:\/\/[^/]+$/.test(base || '') || !playlist?.startsWith('/hls/') || !(seconds > 0)) {
  console.error('usage: node latency.mjs http://127.0.0.1:PORT /hls/PLAYLIST.m3u8 SECONDS [MAX_LATENCY_S]');
  process.exit(2);
}
const maxLatency = maxArg === undefined ? null : Number(maxArg);
setTimeout(() => {
  console.error('FAIL: did not finish in time');
  process.exit(1);
}, (seconds + 60) * 1000).unref();

const browser = await launchChromium();
let code = 0;
try {
  const page = await browser.newPage();
  await page.goto(`${base}/?src=${encodeURIComponent(playlist)}`);
  const sample = () => page.evaluate(() => {
    const v = document.getElementById('preview');
    const h = window.roomcast.hls;
    return { t: v.currentTime, latency: h && Number.isFinite(h.latency) ? h.latency : null,
      stalls: window.roomcast.stalls, starts: window.roomcast.playerStarts };
  });
  // Wait for playback to start (up to 20 s).
  let s = await sample();
  for (let i = 0; i < 200 && s.t === 0; i++) { await sleep(100); s = await sample(); }
  if (s.t === 0) throw new Error('playback never started');
  await sleep(4000); // let hls.js settle on its target latency
  const first = await sample();
  const latencies = [];
  let last = first.t;
  let frozen = 0;
  for (let i = 0; i < seconds * 4; i++) {
    await sleep(250);
    s = await sample();
    if (s.latency !== null) latencies.push(s.latency);
    frozen = s.t === last ? frozen + 1 : 0;
    if (frozen >= 4) throw new Error(`picture frozen at ${s.t.toFixed(2)} s`);
    last = s.t;
  }
  const result = {
    playlist, seconds,
    advanced: Number((s.t - first.t).toFixed(2)),
    stalls: s.stalls - first.stalls,
    restarts: s.starts - first.starts,
    latency: summary(latencies),
  };
  console.log(JSON.stringify(result));
  if (maxLatency !== null) {
    const problems = [];
    if (result.advanced < seconds * 0.9) problems.push(`played only ${result.advanced} s in ${seconds} s`);
    if (result.stalls > 0) problems.push(`${result.stalls} stalls`);
    if (result.restarts > 0) problems.push(`player restarted ${result.restarts} times`);
    if (!result.latency) problems.push('hls.js reported no latency');
    else if (result.latency.max > maxLatency) problems.push(`latency reached ${result.latency.max} s (limit ${maxLatency} s)`);
    if (problems.length) { console.error(`FAIL: ${problems.join('; ')}`); code = 1; }
  }
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
