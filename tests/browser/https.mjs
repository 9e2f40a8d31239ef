// Headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM) opens the
// roomcast page over HTTPS, trusting exactly the key the box presents
// (SPKI_SHA256: base64 SHA-256 of its SubjectPublicKeyInfo, as Chromium's
// --ignore-certificate-errors-spki-list takes it; no other certificate
// error is ignored), and checks: the page loads over HTTPS with HTTP/2,
// hls.js plays the LL-HLS preview, and the API answers from the page's
// origin with the token.
//
//   SPKI_SHA256=... ROOMCAST_TOKEN=... node https.mjs https://127.0.0.1:8443
//
// Exit 0 when every check passed; 1 with the failing check; 2 on bad usage.
import { chromium } from 'playwright-core';

const base = (process.argv[2] || '').replace(/\/+$/, '');
const spki = process.env.SPKI_SHA256 || '';
if (!/^https:\/\/[^/]+$/.test(base) || !spki) {
  console.error('usage: SPKI_SHA256=... node https.mjs https://127.0.0.1:PORT');
  process.exit(2);
}
const token = process.env.ROOMCAST_TOKEN || '';
const label = process.env.LABEL || 'HTTPS';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let checks = 0;
const ok = (what) => console.log(`ok ${++checks} - ${label}: ${what}`);
const log = [];
setTimeout(() => {
  console.error(`FAIL: ${label}: did not finish within 60 s\n${log.join('\n')}`);
  process.exit(1);
}, 60_000).unref();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  timeout: 30_000,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('requestfailed', (r) => log.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  const res = await page.goto(`${base}/`, { waitUntil: 'load', timeout: 15_000 });
  if (res.status() !== 200) throw new Error(`GET / answered ${res.status()}`);
  const proto = await page.evaluate(() => ({
    scheme: location.protocol,
    http: performance.getEntriesByType('navigation')[0]?.nextHopProtocol,
  }));
  if (proto.scheme !== 'https:' || proto.http !== 'h2') throw new Error(`page loaded over ${JSON.stringify(proto)}`);
  ok(`page loaded over ${proto.scheme} ${proto.http}, certificate trusted by its key only`);

  // hls.js plays the preview (LL-HLS over the same HTTPS connection).
  const deadline = Date.now() + 30_000;
  let first = null;
  let s;
  for (;;) {
    s = await page.evaluate(() => {
      const v = document.getElementById('preview');
      return { t: v.currentTime, paused: v.paused, src: window.roomcast?.playerUrl };
    });
    if (first === null && s.t > 0 && !s.paused) first = s.t;
    if (first !== null && s.t >= first + 2) break;
    if (Date.now() > deadline) throw new Error(`the preview did not play 2 s: ${JSON.stringify(s)}`);
    await sleep(250);
  }
  const parts = await page.evaluate(() => performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/hls/'))
    .map((e) => e.nextHopProtocol));
  if (!parts.length || parts.some((p) => p !== 'h2')) throw new Error(`stream requests over ${JSON.stringify(parts.slice(0, 5))}`);
  ok(`hls.js plays the live stream (${s.t.toFixed(1)} s), ${parts.length} stream requests over h2`);

  // The API from the page's origin.
  const status = await page.evaluate(async (t) => {
    const r = await fetch('/api/status', { headers: { Authorization: `Bearer ${t}` } });
    return { code: r.status, https: (await r.json()).https };
  }, token);
  if (status.code !== 200 || !status.https?.fingerprint) throw new Error(`/api/status: ${JSON.stringify(status)}`);
  ok(`API answers over HTTPS; status shows the certificate ${status.https.fingerprint.slice(0, 23)}…`);
  console.log(`FINGERPRINT ${status.https.fingerprint}`);
} catch (e) {
  console.error(`FAIL: ${label}: ${e.message}\n${log.join('\n')}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
