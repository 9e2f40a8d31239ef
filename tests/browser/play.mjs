// Headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM) opens the roomcast
// page served at BASE_URL, watches hls.js play the live stream, reads the status
// panel and clicks through the settings form.
//
//   node play.mjs http://127.0.0.1:8080
//
// Exit 0 when every check passed; 1 with the failing check and what the page
// showed; 2 on bad usage. Never runs longer than 90 s.
import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { chromium } from 'playwright-core';

const HARD_TIMEOUT_MS = 90_000;
const PLAY_TIMEOUT_MS = 30_000;

const base = (process.argv[2] || '').replace(/\/+$/, '');
if (!/^https?:\/\/[^/]+$/.test(base)) {
  console.error('usage: node play.mjs http://127.0.0.1:PORT');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
let checks = 0;
const ok = (what) => {
  checks++;
  console.log(`ok ${checks} - ${what} [${elapsed()}]`);
};
class CheckFailed extends Error {}
const fail = (what) => {
  throw new CheckFailed(what);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const pageLog = []; // the page's console and errors, shown when a check fails
let browser = null;

setTimeout(() => {
  console.error(`FAIL: browser test did not finish within ${HARD_TIMEOUT_MS / 1000} s`);
  dumpPageLog();
  process.exit(1); // playwright kills the browser it launched on exit
}, HARD_TIMEOUT_MS).unref();

// The daemon's API needs the admin; the test reads it with the API token the
// Rust side provisioned (ROOMCAST_TOKEN), independently of the page's session.
const token = process.env.ROOMCAST_TOKEN || '';
const PASSWORD = 'meeting-room-42';
// The one-time setup code the daemon keeps in its data directory (the Rust
// side reads it there): the first password needs it.
const SETUP_CODE = process.env.SETUP_CODE || '';
const shotDir = process.env.SCREENSHOTS || '';
const shot = async (page, name) => {
  if (!shotDir) return;
  fs.mkdirSync(shotDir, { recursive: true });
  await page.screenshot({ path: `${shotDir}/${name}.png`, fullPage: true });
};

async function apiGet(path) {
  const res = await fetch(base + path, { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) fail(`GET ${path} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

// What the player looks like right now.
const videoState = (page) =>
  page.evaluate(() => {
    const v = document.getElementById('preview');
    return {
      currentTime: v.currentTime,
      paused: v.paused,
      readyState: v.readyState,
      networkState: v.networkState,
      error: v.error && `${v.error.code} ${v.error.message}`,
      buffered: [...Array(v.buffered.length).keys()].map((i) => [v.buffered.start(i), v.buffered.end(i)]),
      playerState: document.getElementById('player-state')?.textContent,
      playerStarts: window.roomcast?.playerStarts,
      // Chromium's decoded-byte counters (count while muted too).
      bytes: v.webkitAudioDecodedByteCount,
      videoBytes: v.webkitVideoDecodedByteCount,
      muted: v.muted,
    };
  });

// Waits until the video has played 2 s of media, then checks it keeps playing
// over the next 2 s of wall time.
async function expectPlaying(page, label) {
  const deadline = Date.now() + PLAY_TIMEOUT_MS;
  let first = null;
  let s;
  for (;;) {
    s = await videoState(page);
    if (first === null && s.currentTime > 0 && !s.paused) first = s.currentTime;
    if (first !== null && s.currentTime >= first + 2) break;
    if (Date.now() > deadline) {
      fail(`${label}: the video did not play 2 s within ${PLAY_TIMEOUT_MS / 1000} s; player: ${JSON.stringify(s)}`);
    }
    await sleep(250);
  }
  const t1 = s.currentTime;
  await sleep(2000);
  const t2 = (await videoState(page)).currentTime;
  if (!(t2 > t1 + 1)) fail(`${label}: the video stopped advancing: currentTime ${t1.toFixed(2)} s, 2 s later ${t2.toFixed(2)} s`);
  ok(`${label}: video plays (started at ${first.toFixed(2)} s, ${t1.toFixed(2)} s -> ${t2.toFixed(2)} s over 2 s)`);
}

// Checks Chromium decodes the stream's sound (issue 10): the AAC track
// reaches the audio decoder and keeps reaching it. The preview is muted
// (autoplay needs that); Chromium decodes the audio of a muted element all
// the same, and webkitAudioDecodedByteCount counts it.
async function expectAudioDecodes(page, label) {
  const read = () => videoState(page);
  const first = await read();
  if (typeof first.bytes !== 'number') fail(`${label}: this Chromium has no webkitAudioDecodedByteCount: ${JSON.stringify(first)}`);
  const deadline = Date.now() + 5000;
  let s = first;
  for (;;) {
    if (s.bytes > 0 && s.bytes > first.bytes) break;
    if (Date.now() > deadline) {
      fail(`${label}: no audio decoded: webkitAudioDecodedByteCount ${first.bytes} -> ${s.bytes} while the video played ${first.currentTime.toFixed(2)} s -> ${s.currentTime.toFixed(2)} s; ${JSON.stringify(s)}`);
    }
    await sleep(250);
    s = await read();
  }
  ok(`${label}: audio decodes in Chromium (webkitAudioDecodedByteCount ${first.bytes} -> ${s.bytes}, video ${s.videoBytes}, muted ${s.muted})`);
}

// Text of an element once `pred` accepts it (waiting at most `ms`).
async function waitText(page, id, pred, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = await page.evaluate((id) => document.getElementById(id)?.textContent ?? null, id);
    if (text !== null && pred(text)) return text;
    if (Date.now() > deadline) fail(`${what}: #${id} shows ${JSON.stringify(text)}`);
    await sleep(100);
  }
}

async function run() {
  if (!fs.existsSync(executablePath)) {
    fail(`no Chromium at ${executablePath}: run tests/run.sh (it installs Debian's chromium) or set CHROMIUM=/path/to/chromium`);
  }
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 30_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  ok(`launched ${executablePath} (Chromium ${browser.version()})`);

  const page = await browser.newPage();
  page.on('console', (m) => pageLog.push(`console.${m.type()}: ${m.text()} (${m.location().url})`));
  page.on('pageerror', (e) => pageLog.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => pageLog.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => r.status() >= 500 && pageLog.push(`HTTP ${r.status()}: ${r.url()}`));
  page.setDefaultTimeout(10_000);

  // The page and hls.js.
  const res = await page.goto(`${base}/`, { waitUntil: 'load', timeout: 15_000 });
  if (res.status() !== 200) fail(`GET / answered ${res.status()}`);
  const title = await page.title();
  if (title !== 'roomcast') fail(`page title is ${JSON.stringify(title)}, expected "roomcast"`);
  ok(`page loaded from ${base}/ (title "${title}")`);
  const hls = await page.evaluate(() => (typeof window.Hls === 'function' ? { version: Hls.version, supported: Hls.isSupported() } : null));
  if (!hls) fail('hls.js did not load: window.Hls is undefined (is /hls.min.js served?)');
  if (!hls.supported) fail('hls.js says this browser cannot play HLS (no MediaSource / H.264?)');
  ok(`hls.js ${hls.version} loaded and supported`);

  // First start: the page asks for a new admin password and shows no setting.
  await page.waitForSelector('#auth-card:not([hidden])');
  if (!(await page.textContent('#auth-title')).includes('Set the admin password')) fail('first start did not ask to set the admin password');
  if (await page.isVisible('#settings') || await page.isVisible('#status')) fail('settings or status visible before the password was set');
  await shot(page, '1-first-start');
  if (!SETUP_CODE) fail('SETUP_CODE is not set (tests/browser.rs passes the daemon\'s setup code)');
  if (!(await page.isVisible('#auth-code'))) fail('first start does not ask for the setup code');
  const hint = await page.textContent('#auth-code-hint');
  if (!['roomcast-host flash', 'roomcast-setup-code.txt', 'log'].every((w) => hint.includes(w))) fail(`the setup code field does not say where to find the code: ${JSON.stringify(hint)}`);
  // A wrong setup code is refused on the page, and sets nothing.
  const wrongCode = SETUP_CODE.startsWith('2') ? '3333-3333-3333-3333' : '2222-2222-2222-2222';
  await page.fill('#auth-code', wrongCode);
  await page.fill('#auth-password', PASSWORD);
  await page.fill('#auth-confirm', PASSWORD);
  await page.click('#auth-submit');
  const refused = await waitText(page, 'auth-result', (t) => t.length > 0, 10_000, 'setting the password with a wrong setup code said nothing');
  if (!refused.includes('wrong setup code')) fail(`a wrong setup code: the page says ${JSON.stringify(refused)}, expected "wrong setup code"`);
  if (await page.isVisible('#settings')) fail('settings visible after a wrong setup code');
  const session = await (await fetch(`${base}/api/session`, { signal: AbortSignal.timeout(5000) })).json();
  if (session.setup_needed !== true || session.setup_code_needed !== true) fail(`a wrong setup code set the password: /api/session ${JSON.stringify(session)}`);
  ok(`first start: a wrong setup code is refused on the page ("${refused}"), no password set`);
  // The right one, typed as people do (lower case), sets the password.
  await page.fill('#auth-code', SETUP_CODE.toLowerCase());
  await page.click('#auth-submit');
  await page.waitForSelector('#settings', { state: 'visible' });
  ok('first start: the page asked for the setup code and an admin password, and set it');

  // (a) live playback
  await expectPlaying(page, 'live stream');
  await expectAudioDecodes(page, 'live stream');
  await shot(page, '2-main');

  // (b) status panel
  const frames = await waitText(page, 'st-frames', (t) => /\b[1-9]\d* encoded/.test(t), 5000, 'status panel shows no encoded frames');
  ok(`status panel: frames ${frames}`);

  // (c) settings form: a bad value is refused and changes nothing...
  const before = await apiGet('/api/config');
  await page.waitForFunction(() => !document.getElementById('apply').disabled);
  const shownWidth = await page.inputValue('#cfg-width');
  if (shownWidth !== String(before.video.width)) fail(`form shows width ${shownWidth}, /api/config says ${before.video.width}`);
  ok(`settings form filled from /api/config (width ${shownWidth}, bitrate ${await page.inputValue('#cfg-bitrate')} kbit/s)`);

  await page.fill('#cfg-width', '7');
  await page.click('#apply');
  const err = await waitText(page, 'apply-result', (t) => t.includes('video.width'), 10_000, 'Apply with width 7 did not report an error on video.width');
  const fieldErr = await page.evaluate(() => document.getElementById('err-video.width').textContent);
  if (!fieldErr) fail('width 7 was refused but no error is shown next to the width field');
  const afterBad = await apiGet('/api/config');
  if (!isDeepStrictEqual(afterBad, before)) {
    fail(`a refused apply changed /api/config: ${JSON.stringify(before)} -> ${JSON.stringify(afterBad)}`);
  }
  ok(`width 7 refused: "${err}" (next to the field: "${fieldErr}"), /api/config unchanged`);

  // The LL-HLS part target is refused below 100 ms, next to its own field.
  await page.fill('#cfg-width', String(before.video.width));
  await page.fill('#cfg-part', '50');
  await page.click('#apply');
  await waitText(page, 'apply-result', (t) => t.includes('hls.part_ms'), 10_000, 'Apply with part 50 ms did not report an error on hls.part_ms');
  const partErr = await page.evaluate(() => document.getElementById('err-hls.part_ms').textContent);
  if (!partErr) fail('part 50 ms was refused but no error is shown next to its field');
  if (!isDeepStrictEqual(await apiGet('/api/config'), before)) fail('a refused part target changed /api/config');
  if (!(await page.isChecked('#cfg-ll'))) fail('the low-latency checkbox does not show hls.low_latency = true');
  await page.fill('#cfg-part', String(before.hls.part_ms));
  ok(`LL-HLS part target 50 ms refused next to its field: "${partErr}"; low-latency box checked`);

  // The ladder editor: a rung larger than the picture is refused next to
  // its own box, and nothing changes.
  await page.selectOption('#ladder-mode', 'custom');
  await page.fill('#ladder .rung-row .rung-width', '9999');
  await page.click('#apply');
  await waitText(page, 'apply-result', (t) => t.includes('ladder[0].width'), 10_000, 'a rung wider than the picture did not report an error on ladder[0].width');
  const rungErr = await page.textContent('#err-ladder');
  const marked = await page.getAttribute('#ladder .rung-row .rung-width', 'aria-invalid');
  if (!rungErr || marked !== 'true') fail(`a refused rung: error ${JSON.stringify(rungErr)}, width box aria-invalid ${marked}`);
  if (!isDeepStrictEqual(await apiGet('/api/config'), before)) fail('a refused ladder changed /api/config');
  ok(`a rung 9999 px wide refused next to it: "${rungErr}"; /api/config unchanged`);
  await page.fill('#ladder .rung-row .rung-width', '320');
  await page.fill('#ladder .rung-row .rung-height', '180');
  await page.fill('#ladder .rung-row .rung-bitrate', '300');

  // ...and a good one is applied (with the 320x180 rung), and the stream comes back.
  const startsBefore = (await videoState(page)).playerStarts;
  await page.fill('#cfg-width', String(before.video.width));
  await page.fill('#cfg-bitrate', '900');
  await page.click('#apply');
  const applied = await waitText(page, 'apply-result', (t) => t.includes('Applied') || /error|must|:/.test(t), 15_000, 'Apply with bitrate 900 did not say "Applied"');
  if (!applied.includes('Applied')) fail(`Apply with bitrate 900 failed: ${applied}`);
  const after = await apiGet('/api/config');
  if (after.video?.bitrate_kbps !== 900) fail(`after Apply, /api/config says bitrate_kbps ${after.video?.bitrate_kbps}, expected 900`);
  ok(`bitrate 900 applied: page says "${applied}", /api/config has bitrate_kbps 900`);
  if (!isDeepStrictEqual(after.ladder, [{ width: 320, height: 180, bitrate_kbps: 300 }])) fail(`after Apply, /api/config has ladder ${JSON.stringify(after.ladder)}`);
  // The recorder's rendition list follows what the box runs.
  await page.waitForFunction(() => [...document.querySelectorAll('#cfg-rec-rendition option')].some((o) => o.textContent.startsWith('r1: 320×180')), null, { timeout: 15_000 })
    .catch(() => fail('the recorder\'s rendition list does not offer the 320x180 rendition'));
  ok('ladder applied: /api/config has the 320x180 rung and the rendition lists offer it');

  await page.waitForFunction((n) => window.roomcast.playerStarts > n, startsBefore, { timeout: 10_000 }).catch(() => {
    fail('the page did not restart its player after Apply');
  });
  await expectPlaying(page, 'stream after restart');
  await expectAudioDecodes(page, 'stream after restart');

  // Log out: the admin sections go, the login form comes.
  await page.click('#logout');
  await page.waitForSelector('#auth-card:not([hidden])');
  if (!(await page.textContent('#auth-title')).includes('Log in')) fail('after logging out the page does not offer to log in');
  if (await page.isVisible('#settings')) fail('settings still visible after logging out');
  await shot(page, '3-login');
  ok('logged out: login form shown, settings hidden');

  // Without a session or token, every admin API call answers 401.
  for (const [method, path] of [['GET', '/api/status'], ['GET', '/api/config'], ['GET', '/metrics'], ['PUT', '/api/config'], ['POST', '/api/token']]) {
    const r = await fetch(base + path, { method, body: method === 'GET' ? undefined : '{}', signal: AbortSignal.timeout(5000) });
    if (r.status !== 401) fail(`${method} ${path} without a session answered ${r.status}, expected 401`);
  }
  const pageText = await page.textContent('body');
  if (/bitrate_kbps|"video"/.test(pageText)) fail('the logged-out page shows settings');
  ok('without a session: /api/status, /api/config, /metrics, PUT /api/config, POST /api/token answer 401; the page shows no settings');

  // Log in again through the form.
  await page.fill('#auth-password', PASSWORD);
  await page.click('#auth-submit');
  await page.waitForSelector('#settings', { state: 'visible' });
  ok('logged in again through the form');

  // A state change with the session cookie but without the CSRF token is refused.
  const csrfless = await page.evaluate(async () => {
    const r = await fetch('/api/config', { method: 'PUT', body: '{"video":{"bitrate_kbps":777}}', headers: { 'Content-Type': 'application/json' } });
    return r.status;
  });
  if (csrfless !== 403) fail(`PUT /api/config without X-CSRF-Token answered ${csrfless}, expected 403`);
  if ((await apiGet('/api/config')).video.bitrate_kbps === 777) fail('a PUT without CSRF token changed the config');
  ok('PUT without the CSRF token refused (403), config unchanged');

  // Viewer password: the admin sets it on the page; a browser without
  // cookies gets 401 for the stream and a prompt; the password plays it but
  // unlocks no admin API; clearing it opens the stream again.
  const VIEWER_PASSWORD = 'front-row-viewers';
  await page.fill('#viewer-pw', VIEWER_PASSWORD);
  await page.click('#viewer-set');
  await waitText(page, 'viewer-result', (t) => t.length > 0, 10_000, 'setting the viewer password said nothing');
  if ((await page.textContent('#viewer-result')) !== 'Viewer password set') fail(`setting the viewer password failed: ${await page.textContent('#viewer-result')}`);
  const adminHls = await page.evaluate(async () => (await fetch('/hls/ts/index.m3u8', { cache: 'no-store' })).status);
  if (adminHls !== 200) fail(`the admin's session got ${adminHls} for the stream, expected 200`);
  ok('viewer password set on the page; the admin session still gets the stream');
  const viewerContext = await browser.newContext();
  const viewer = await viewerContext.newPage();
  viewer.on('pageerror', (e) => pageLog.push(`viewer page error: ${e.message}`));
  await viewer.goto(`${base}/`, { waitUntil: 'load', timeout: 15_000 });
  const locked = await viewer.evaluate(async () => (await fetch('/hls/index.m3u8', { cache: 'no-store' })).status);
  if (locked !== 401) fail(`without cookies /hls/index.m3u8 answered ${locked}, expected 401`);
  await viewer.waitForSelector('#viewer-form:not([hidden])', { timeout: 15_000 }).catch(() => fail('no viewer password prompt after /hls/ answered 401'));
  if (await viewer.isVisible('#preview')) fail('the preview is shown next to the viewer password prompt');
  await shot(viewer, '8-viewer-prompt');
  ok('a browser without cookies: /hls/index.m3u8 answers 401 and the page asks for the viewer password');
  await viewer.fill('#viewer-password', 'not-the-password');
  await viewer.click('#viewer-submit');
  await waitText(viewer, 'viewer-login-result', (t) => t.includes('wrong password'), 10_000, 'a wrong viewer password was not refused');
  await viewer.fill('#viewer-password', VIEWER_PASSWORD);
  await viewer.click('#viewer-submit');
  await viewer.waitForSelector('#viewer-form', { state: 'hidden', timeout: 10_000 }).catch(() => fail('the viewer password did not close the prompt'));
  await expectPlaying(viewer, 'viewer with the viewer password');
  const cookies = await viewerContext.cookies();
  const vc = cookies.find((c) => c.name === 'roomcast_viewer');
  if (!vc || !vc.httpOnly || vc.sameSite !== 'Strict') fail(`viewer cookie not HttpOnly/SameSite=Strict: ${JSON.stringify(cookies)}`);
  const viewerApi = await viewer.evaluate(async () => [(await fetch('/api/status')).status, (await fetch('/api/config')).status]);
  if (viewerApi.some((s) => s !== 401)) fail(`the viewer cookie reached the admin API: /api/status, /api/config answered ${viewerApi}`);
  ok(`viewer password plays the stream; the viewer cookie (HttpOnly, SameSite=Strict) gets 401 from /api/status and /api/config`);
  // Chromium allows six connections to one host; two playing pages hold
  // most of them with blocking LL-HLS requests.
  await viewerContext.close();
  await page.click('#viewer-clear');
  await waitText(page, 'viewer-result', (t) => t.includes('open'), 10_000, 'clearing the viewer password said nothing');
  const openContext = await browser.newContext();
  const open = await openContext.newPage();
  await open.goto(`${base}/`, { waitUntil: 'load', timeout: 15_000 });
  const opened = await open.evaluate(async () => (await fetch('/hls/index.m3u8', { cache: 'no-store' })).status);
  if (opened !== 200) fail(`after clearing the viewer password /hls/index.m3u8 answered ${opened} without cookies`);
  if (await open.isVisible('#viewer-form')) fail('the viewer prompt is shown although the stream is open');
  await openContext.close();
  ok('viewer password cleared on the page: the stream is open again without cookies');

  // Recording from the Settings form: on and off without restarting the
  // player; the status row follows.
  const recStarts = (await videoState(page)).playerStarts;
  await page.check('#cfg-rec');
  await page.fill('#cfg-rec-minutes', '5');
  await page.click('#apply');
  await waitText(page, 'apply-result', (t) => t.includes('Applied') || /:/.test(t), 10_000, 'turning recording on said nothing');
  if ((await page.textContent('#apply-result')) !== 'Applied') fail(`turning recording on failed: ${await page.textContent('#apply-result')}`);
  const recRow = await waitText(page, 'st-recording', (t) => t.startsWith('recording roomcast-'), 15_000, 'status does not show the recording');
  const rec = (await apiGet('/api/config')).record;
  if (!rec.enabled || rec.segment_minutes !== 5 || rec.dir !== '') fail(`/api/config record after Apply: ${JSON.stringify(rec)}`);
  await page.uncheck('#cfg-rec');
  await page.click('#apply');
  await waitText(page, 'st-recording', (t) => t === 'off', 15_000, 'status does not show the recording off');
  if ((await videoState(page)).playerStarts !== recStarts) {
    const why = await page.evaluate(() => ({ fatal: window.roomcast.fatal, restarts: window.roomcast.restarts }));
    fail(`turning recording on or off restarted the player: ${JSON.stringify(why)}`);
  }
  ok(`recording turned on from the page ("${recRow}") and off again; the player was not restarted`);

  // Status shows the bitrate set earlier.
  await waitText(page, 'st-encoder', (t) => t.includes('900 kbit/s'), 5000, 'status does not show the new target bitrate 900 kbit/s');
  ok('status reports the new target bitrate (900 kbit/s)');

  // Outputs: a bad destination is refused next to the outputs list.
  const beforeOut = await apiGet('/api/config');
  await page.click('#add-output');
  await page.fill('#outputs .out-row:last-child .out-url', 'ftp://example.com/live');
  await page.click('#apply');
  await waitText(page, 'err-outputs', (t) => t.includes('outputs[0].url'), 10_000, 'a bad output URL was not refused next to the outputs');
  if (!isDeepStrictEqual(await apiGet('/api/config'), beforeOut)) fail('a refused output changed /api/config');
  await page.click('#outputs .out-row:last-child .out-remove');
  ok(`bad output URL refused: "${await page.textContent('#err-outputs')}"`);

  // Add an SRT output to the local libsrt listener and see it connect.
  const srtUrl = process.env.SRT_OUTPUT;
  if (srtUrl) {
    await page.click('#add-output');
    await page.fill('#outputs .out-row:last-child .out-url', srtUrl);
    await page.click('#apply');
    await waitText(page, 'apply-result', (t) => t.includes('Applied'), 10_000, 'adding the SRT output was not applied');
    await page.waitForFunction(() => [...document.querySelectorAll('#st-outputs td.state')].some((td) => td.textContent === 'sending'), null, { timeout: 15_000 })
      .catch(() => fail('the SRT output did not reach "sending" in the status table'));
    await shot(page, '5-outputs');
    ok(`SRT output ${srtUrl} added on the page and sending (status table)`);
  }

  // Source picker: the (simulated) camera is listed with its real modes;
  // choosing it switches the stream to it, and status and preview follow.
  if (process.env.EXPECT_CAMERA) {
    await page.waitForFunction(() => [...document.querySelectorAll('#cfg-source option')].some((o) => o.value === 'v4l2:/dev/video0'), null, { timeout: 10_000 })
      .catch(() => fail('the source picker does not list the camera /dev/video0'));
    await page.selectOption('#cfg-source', 'v4l2:/dev/video0');
    const modes = await page.textContent('#source-modes');
    if (!modes.includes('YUYV 640×360@30')) fail(`the camera's modes are not shown: ${modes}`);
    const encoders = await page.$$eval('#cfg-encoder option', (os) => os.map((o) => o.value));
    if (!encoders.includes('passthrough')) fail(`the encoder picker lacks pass-through: ${encoders}`);
    const camStarts = (await videoState(page)).playerStarts;
    await page.click('#apply');
    await waitText(page, 'apply-result', (t) => t.includes('Applied'), 15_000, 'switching to the camera was not applied');
    const cam = await waitText(page, 'st-camera', (t) => t.startsWith('live'), 15_000, 'status does not show the camera live');
    await page.waitForFunction((n) => window.roomcast.playerStarts > n, camStarts, { timeout: 10_000 }).catch(() => {});
    await expectPlaying(page, 'camera stream');
    await shot(page, '7-camera');
    ok(`source picker: camera chosen from the list (${modes.length} chars of modes), status "${cam.slice(0, 50)}", preview plays`);
  }

  // Sound picker: the (simulated) sound card is listed with its rates and
  // channels; choosing it restarts only the sound, and status follows.
  if (process.env.EXPECT_SOUND_CARD) {
    const want = `alsa:${process.env.EXPECT_SOUND_CARD}`;
    await page.waitForFunction((w) => [...document.querySelectorAll('#cfg-audio-source option')].some((o) => o.value === w), want, { timeout: 10_000 })
      .catch(() => fail(`the sound picker does not list ${want}`));
    await page.selectOption('#cfg-audio-source', want);
    const rates = await page.textContent('#audio-modes');
    if (!rates.includes('48000')) fail(`the sound card's rates are not shown: ${rates}`);
    await page.selectOption('#cfg-audio-channels', '1');
    await page.fill('#cfg-audio-gain', '6');
    const restartsBefore = (await apiGet('/api/status')).encoder.restarts;
    await page.click('#apply');
    await waitText(page, 'apply-result', (t) => t.includes('Applied'), 15_000, 'choosing the sound card was not applied');
    const sound = await waitText(page, 'st-audio', (t) => t.startsWith('live') && t.includes(process.env.EXPECT_SOUND_CARD) && t.includes('gain 6 dB'), 15_000, 'status does not show the sound card live');
    const cfg = await apiGet('/api/config');
    if (cfg.audio.source !== want || cfg.audio.channels !== 1 || cfg.audio.gain_db !== 6) fail(`the sound settings were not stored: ${JSON.stringify(cfg.audio)}`);
    await expectPlaying(page, 'stream with the sound card');
    await shot(page, '9-sound');
    ok(`sound picker: ${want} chosen (${rates}), mono, +6 dB; status "${sound.slice(0, 60)}"; encoder restarts ${restartsBefore} -> ${(await apiGet('/api/status')).encoder.restarts}`);
  }

  // Configuration export (secrets masked unless asked) and import.
  const exported = await page.evaluate(async () => (await fetch('/api/config/export')).text());
  if (!exported.includes('bitrate_kbps = 900')) fail(`export does not hold the stored bitrate: ${exported}`);
  const imported = exported.replace('bitrate_kbps = 900', 'bitrate_kbps = 1100');
  await page.setInputFiles('#import-file', { name: 'roomcast-config.toml', mimeType: 'text/plain', buffer: Buffer.from(imported) });
  await waitText(page, 'import-result', (t) => t.length > 0, 15_000, 'import said nothing');
  if ((await page.textContent('#import-result')) !== 'Imported') fail(`import failed: ${await page.textContent('#import-result')}`);
  if ((await apiGet('/api/config')).video.bitrate_kbps !== 1100) fail('the imported bitrate is not in effect');
  await page.setInputFiles('#import-file', { name: 'bad.toml', mimeType: 'text/plain', buffer: Buffer.from('[video]\nwidth = 7\n') });
  await waitText(page, 'import-result', (t) => t.includes('video.width'), 15_000, 'a bad import was not refused with the field');
  if ((await apiGet('/api/config')).video.bitrate_kbps !== 1100) fail('a refused import changed the config');
  await shot(page, '4-settings');
  ok('configuration exported, re-imported with a change (bitrate 1100 in effect); a bad file refused with its field');

  // A phone-sized screen: one column, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await shot(page, '6-phone');
  if (overflow > 1) fail(`on a 390 px wide screen the page is ${overflow} px too wide`);
  ok('phone-sized screen: the page fits 390 px without sideways scrolling');

  // Ten wrong passwords in a row are slowed down (429 with Retry-After).
  const statuses = [];
  for (let i = 0; i < 10; i++) {
    const r = await fetch(`${base}/api/login`, { method: 'POST', body: '{"password":"wrong-guess"}', signal: AbortSignal.timeout(5000) });
    statuses.push(r.status);
  }
  const slowed = statuses.filter((s) => s === 429).length;
  if (slowed < 5 || statuses.some((s) => s !== 401 && s !== 429)) fail(`ten wrong passwords answered ${statuses.join(',')}: expected 401s then 429s`);
  ok(`ten wrong passwords: ${statuses.join(',')} (slowed down after the third)`);
}

function dumpPageLog() {
  if (pageLog.length) console.error(`page log (last 30):\n  ${pageLog.slice(-30).join('\n  ')}`);
}

let code = 0;
try {
  await run();
  console.log(`browser test OK: ${checks} checks in ${elapsed()}`);
} catch (e) {
  code = 1;
  console.error(e instanceof CheckFailed ? `FAIL: ${e.message}` : `FAIL: ${e.stack || e}`);
  dumpPageLog();
} finally {
  await browser?.close().catch(() => {});
}
process.exit(code);
