// hls.js in headless Chromium on the box's page, with the browser's download
// rate limited by DevTools network emulation (CDP
// Network.emulateNetworkConditions): it must leave the top rendition for a
// lower one without a stall while the limit holds, and come back up once
// the limit is lifted.
//
//   node abr.mjs http://127.0.0.1:8080 /hls/index.m3u8 LIMIT_KBPS [MAX_STALLS [MAX_FREEZE_S]]
//
// MAX_STALLS (default 0): stalls allowed while switching; MAX_FREEZE_S
// (default 2): the longest the picture may stand still.
// With ABR_NETNS=NS ABR_DEV=DEV the limit is a tc tbf on DEV inside network
// namespace NS (the box's side of a veth pair) instead of DevTools
// emulation: a real bottleneck, to compare against (as root).
// Prints one JSON line: the levels hls.js saw, when it switched, stalls.
// Exits 1 (with FAIL: on stderr) if it did not switch down, stalled, or did
// not switch back up.
import { launchChromium, sleep } from './player.mjs';

const [base, playlist, limitArg, stallsArg, freezeArg] = process.argv.slice(2);
const limitKbps = Number(limitArg);
const maxStalls = Number(stallsArg ?? 0);
const maxFreezeS = Number(freezeArg ?? 2);
if (!/^https?:\/\/[^/]+$/.test(base || '') || !playlist?.startsWith('/hls/') || !(limitKbps > 0)) {
  console.error('usage: node abr.mjs http://127.0.0.1:PORT /hls/PLAYLIST.m3u8 LIMIT_KBPS');
  process.exit(2);
}
setTimeout(() => {
  console.error('FAIL: did not finish in 150 s');
  process.exit(1);
}, 150_000).unref();

const browser = await launchChromium();
let code = 0;
const log = [];
const fail = (why) => { console.error(`FAIL: ${why}`); code = 1; };
try {
  const page = await browser.newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  // ABR_NETNS + ABR_DEV: shape the box's side of a veth pair with tc tbf
  // instead of DevTools emulation (a real bottleneck, for comparison).
  const { ABR_NETNS: netns, ABR_DEV: dev } = process.env;
  const { execFileSync } = await import('node:child_process');
  const limit = (kbps) => (netns && dev
    ? Promise.resolve(execFileSync('ip', ['netns', 'exec', netns, 'tc', 'qdisc', 'replace', 'dev', dev, 'root',
      ...(kbps > 0 ? ['tbf', 'rate', `${kbps}kbit`, 'burst', '3000', 'latency', '400ms'] : ['pfifo'])]))
    : cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: kbps > 0 ? (kbps * 1000) / 8 : -1, // bytes/s; -1: no limit
      uploadThroughput: -1,
    }));
  await page.goto(`${base}/?src=${encodeURIComponent(playlist)}`);
  const sample = () => page.evaluate(() => {
    const v = document.getElementById('preview');
    const h = window.roomcast.hls;
    const level = h && h.currentLevel >= 0 ? h.levels[h.currentLevel] : null;
    return {
      t: v.currentTime,
      level: h ? h.currentLevel : -1,
      height: level ? level.height : null,
      levels: h ? h.levels.map((l) => ({ height: l.height, bitrate: l.bitrate })) : [],
      estimate: h ? Math.round(h.bandwidthEstimate) : null,
      stalls: window.roomcast.stalls,
      starts: window.roomcast.playerStarts,
    };
  });
  // Until pictures arrive, and hls.js knows the ladder.
  let s = await sample();
  for (let i = 0; i < 200 && (s.t === 0 || s.levels.length < 2); i++) { await sleep(100); s = await sample(); }
  if (s.t === 0) throw new Error('playback never started');
  if (s.levels.length < 2) throw new Error(`hls.js sees ${s.levels.length} level(s)`);
  const top = Math.max(...s.levels.map((l) => l.height));
  const watch = async (what, seconds, done) => {
    const start = Date.now();
    let last = s.t;
    let frozen = 0;
    while (Date.now() - start < seconds * 1000) {
      await sleep(250);
      s = await sample();
      log.push({ at: Number(((Date.now() - t0) / 1000).toFixed(2)), phase: what, height: s.height, estimate: s.estimate, t: Number(s.t.toFixed(2)) });
      frozen = s.t === last ? frozen + 1 : 0;
      if (frozen * 0.25 >= maxFreezeS) throw new Error(`${what}: picture frozen at ${s.t.toFixed(2)} s`);
      last = s.t;
      if (done(s)) return (Date.now() - start) / 1000;
    }
    return null;
  };
  const t0 = Date.now();
  // 1. Unlimited: the top rendition.
  const up0 = await watch('unlimited', 30, (x) => x.height === top);
  if (up0 === null) fail(`without a limit hls.js never played the top rendition (${top} lines)`);
  await watch('unlimited, settled', 3, () => false);
  const before = await sample();
  // 2. Limited below the top rendition: down, without a stall.
  await limit(limitKbps);
  const down = await watch('limited', 45, (x) => x.height !== null && x.height < top);
  if (down === null) fail(`limited to ${limitKbps} kbit/s, hls.js stayed on the top rendition`);
  await watch('limited, settled', 5, () => false);
  const during = await sample();
  // 3. Unlimited again: back up.
  await limit(0);
  const up = await watch('lifted', 60, (x) => x.height === top);
  if (up === null) fail('after the limit was lifted hls.js did not return to the top rendition');
  const after = await sample();
  const stalls = after.stalls - before.stalls;
  if (stalls > maxStalls) fail(`${stalls} stall(s) while switching (allowed: ${maxStalls})`);
  if (after.starts !== before.starts) fail('the player restarted while switching');
  console.log(JSON.stringify({
    playlist, limit_kbps: limitKbps, levels: s.levels, top,
    down_after_s: down, height_while_limited: during.height, up_after_s: up, stalls,
    advanced: Number((after.t - before.t).toFixed(2)),
  }));
  if (code || process.env.ABR_LOG) console.error(JSON.stringify(log));
} catch (e) {
  fail(e.message);
  console.error(JSON.stringify(log.slice(-80)));
} finally {
  await browser.close();
}
process.exit(code);
