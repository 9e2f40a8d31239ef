// roomcast web page: live preview (hls.js), status, settings. Plain JS, no build step.
'use strict';

// The low-latency playlist by default; `?src=/hls/ts/index.m3u8` previews the
// classic MPEG-TS one (only paths of this box's /hls/ are accepted).
const PLAYLIST = (() => {
  const src = new URLSearchParams(location.search).get('src');
  return src && /^\/hls\/[\w./-]+\.m3u8$/.test(src) ? src : '/hls/index.m3u8';
})();
const $ = (id) => document.getElementById(id);

// Read by the browser test (tests/browser/play.mjs) to tell a restarted player from the old one.
// Exposed for tests and for curious people with a console.
window.roomcast = { playerStarts: 0, stalls: 0, hls: null };

// ---------- small helpers ----------

// el('td', {className: 'x'}, 'text', child) builds an element; text is never parsed as HTML.
function el(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props || {});
  node.append(...children.map((c) => (c instanceof Node ? c : String(c ?? '–'))));
  return node;
}

async function fetchJSON(url, options = {}, timeoutMs = 5000) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const res = await fetch(url, { cache: 'no-store', ...options, signal: ctl.signal });
    const text = await res.text();
    let body = null;
    try { body = JSON.parse(text); } catch (_) { body = { error: text.trim() || res.statusText }; }
    return { status: res.status, body };
  } finally {
    clearTimeout(timer);
  }
}

function fmtDuration(s) {
  s = Math.floor(s || 0);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m) return `${m} min ${String(sec).padStart(2, '0')} s`;
  return `${sec} s`;
}

const num = (x, digits = 0) => (typeof x === 'number' ? x.toFixed(digits) : '–');

// ---------- player ----------

let hls = null;
let restartTimer = null; // set while a restart is pending
let lastTime = -1;
let stalledFor = 0;

function setPlayerState(text) { $('player-state').textContent = text; }

function startPlayer() {
  const video = $('preview');
  restartTimer = null;
  stopPlayer();
  window.roomcast.playerStarts++;
  if (window.Hls && Hls.isSupported()) {
    // lowLatencyMode follows the playlist's PART-HOLD-BACK; setting
    // liveSyncDuration(Count) here would override it and add a second.
    hls = new Hls({
      lowLatencyMode: true,
      backBufferLength: 10,
    });
    window.roomcast.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) window.roomcast.stalls++;
      if (!data.fatal) return;
      // Typical while the daemon restarts its pipeline: start over shortly.
      setPlayerState(`stream error (${data.details}), retrying…`);
      restartPlayer(2000);
    });
    hls.loadSource(PLAYLIST);
    hls.attachMedia(video);
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = PLAYLIST; // Safari plays HLS natively
    video.play().catch(() => {});
  } else {
    setPlayerState('this browser cannot play HLS');
    return;
  }
  setPlayerState('connecting to the stream…');
}

function stopPlayer() {
  if (hls) { hls.destroy(); hls = null; }
  lastTime = -1;
  stalledFor = 0;
}

function restartPlayer(delayMs) {
  clearTimeout(restartTimer);
  stopPlayer();
  restartTimer = setTimeout(startPlayer, delayMs);
}

// Called once a second: report the player, and restart it when no new picture
// came for 10 s (a stream that never started counts too).
function watchPlayer() {
  const video = $('preview');
  if (restartTimer) return;
  if (video.paused && video.currentTime > 0) { setPlayerState('paused'); return; }
  if (video.currentTime !== lastTime) {
    lastTime = video.currentTime;
    stalledFor = 0;
    const behind = hls && Number.isFinite(hls.latency) ? `, ${hls.latency.toFixed(1)} s behind live` : '';
    if (video.currentTime > 0) setPlayerState(`live${behind}`);
  } else if (++stalledFor >= 10) {
    setPlayerState('stream stalled, reconnecting…');
    restartPlayer(0);
  }
}

// ---------- status ----------

function renderStatus(s) {
  const src = s.source || {}, enc = s.encoder || {}, fr = s.frames || {}, m = s.measured || {};
  const rows = [
    ['Measured', `${num(m.fps, 1)} fps, ${num(m.bitrate_kbps)} kbit/s`, 'st-measured'],
    ['Frames', `${num(fr.captured)} captured, ${num(fr.encoded)} encoded, ${num(fr.dropped)} dropped`, 'st-frames'],
    ['Source', `${src.kind ?? '–'} ${num(src.width)}×${num(src.height)} @ ${num(src.fps)} fps`, 'st-source'],
    ['Encoder', `${enc.kind ?? '–'} (restarts: ${num(enc.restarts)})`, 'st-encoder'],
    ['Uptime', fmtDuration(s.uptime_s), 'st-uptime'],
    ['Version', s.version, 'st-version'],
  ];
  const dl = el('dl');
  for (const [name, value, id] of rows) dl.append(el('dt', {}, name), el('dd', { id }, value));

  const table = el('table', { id: 'st-sinks' },
    el('thead', {}, el('tr', {}, ...['Output', 'State', 'Queued', 'Dropped', 'Segments'].map((h) => el('th', {}, h)))));
  const body = el('tbody');
  for (const sink of s.sinks || []) {
    body.append(el('tr', {},
      el('td', {}, sink.name),
      el('td', { className: `state state-${sink.state}` }, sink.state),
      el('td', {}, num(sink.queued)),
      el('td', {}, num(sink.dropped)),
      el('td', {}, sink.segments ?? '–')));
  }
  table.append(body);
  $('status').replaceChildren(dl, el('div', { className: 'scroll' }, table));
}

async function pollStatus() {
  try {
    const { status, body } = await fetchJSON('/api/status');
    if (status !== 200) throw new Error(body.error || `HTTP ${status}`);
    renderStatus(body);
    $('conn').textContent = 'online';
    $('conn').className = 'conn ok';
  } catch (e) {
    $('conn').textContent = 'offline';
    $('conn').className = 'conn bad';
  }
  if (!config) loadConfig().then(clearErrors, () => {}); // the box was not up at page load
  watchPlayer();
  setTimeout(pollStatus, 1000);
}

// ---------- settings ----------

let config = null; // last config read from the daemon; the form edits a copy
let loading = null; // the GET /api/config under way, if any

const inputs = () => [...document.querySelectorAll('#settings input[data-field]')];

function getPath(obj, path) { return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj); }
function setPath(obj, path, value) {
  const keys = path.split('.');
  const last = keys.pop();
  const parent = keys.reduce((o, k) => (o[k] ??= {}), obj);
  parent[last] = value;
}

function loadConfig() {
  loading ??= fetchJSON('/api/config')
    .then(({ status, body }) => {
      if (status !== 200) throw new Error(body.error || `HTTP ${status}`);
      config = body;
      for (const input of inputs()) {
        const value = getPath(config, input.dataset.field);
        if (input.type === 'checkbox') input.checked = value === true;
        else input.value = value ?? '';
      }
      $('apply').disabled = false;
    })
    .finally(() => { loading = null; });
  return loading;
}

function clearErrors() {
  $('apply-result').textContent = '';
  $('apply-result').className = '';
  for (const input of inputs()) {
    input.removeAttribute('aria-invalid');
    $(`err-${input.dataset.field}`).textContent = '';
  }
}

function showError(field, message, reason) {
  $('apply-result').textContent = message;
  $('apply-result').className = 'bad';
  const input = inputs().find((i) => i.dataset.field === field);
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    $(`err-${field}`).textContent = reason || message;
    input.focus();
  }
}

async function apply(event) {
  event.preventDefault();
  clearErrors();
  const next = structuredClone(config);
  for (const input of inputs()) {
    if (input.type === 'checkbox') {
      setPath(next, input.dataset.field, input.checked);
      continue;
    }
    const value = input.value.trim() === '' ? NaN : Number(input.value);
    if (!Number.isFinite(value)) {
      showError(input.dataset.field, `${input.dataset.field}: enter a number`, 'enter a number');
      return;
    }
    setPath(next, input.dataset.field, value);
  }
  $('apply').disabled = true;
  $('apply-result').textContent = 'applying…';
  try {
    const { status, body } = await fetchJSON('/api/config', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(next),
    }, 15000);
    if (status === 200) {
      config = next;
      $('apply-result').textContent = 'Applied';
      $('apply-result').className = 'ok';
      setPlayerState('restarting the stream…');
      restartPlayer(1000); // the daemon restarts its pipeline: a new stream
      loadConfig().catch(() => {});
    } else {
      showError(body.field, body.error || `HTTP ${status}`, body.reason);
    }
  } catch (e) {
    showError(null, `could not reach the box: ${e.message}`);
  } finally {
    $('apply').disabled = false;
  }
}

// ---------- start ----------

$('settings').addEventListener('submit', apply);
loadConfig().catch((e) => showError(null, `could not read the settings: ${e.message}`));
pollStatus();
startPlayer();
