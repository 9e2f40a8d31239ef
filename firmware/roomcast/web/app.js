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
window.roomcast = { playerStarts: 0, stalls: 0, hls: null, fatal: [], restarts: [] };

// ---------- small helpers ----------

// el('td', {className: 'x'}, 'text', child) builds an element; text is never parsed as HTML.
function el(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props || {});
  node.append(...children.map((c) => (c instanceof Node ? c : String(c ?? '–'))));
  return node;
}

// CSRF token of the admin session: sent with every request that changes state.
let csrf = null;

async function fetchJSON(url, options = {}, timeoutMs = 5000) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  const headers = { ...(options.headers || {}) };
  if (csrf && options.method && options.method !== 'GET') headers['X-CSRF-Token'] = csrf;
  try {
    const res = await fetch(url, { cache: 'no-store', ...options, headers, signal: ctl.signal });
    if (res.status === 401 && !['/api/login', '/api/setup', '/api/viewer-login'].includes(url)) showAuth();
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
let viewerNeeded = false; // the stream answered 401: a viewer password is set

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
      // A live stream a second or three behind has that much buffer: the
      // bandwidth estimate must follow a slower link faster than the
      // buffer runs dry (hls.js's 3 s / 9 s half-lives take ~10 s), or the
      // switch to a lower rendition comes after a stall.
      abrEwmaFastLive: 1,
      abrEwmaSlowLive: 3,
      // Small parts arriving in bursts read faster than the link really
      // is (measured ~17 % over a tc-shaped link): stay on a rendition only
      // while the estimate clears it by more than hls.js's default 5 %.
      abrBandWidthFactor: 0.8,
    });
    window.roomcast.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.response && data.response.code === 401) { showViewerPrompt(); return; }
      if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) window.roomcast.stalls++;
      if (!data.fatal) return;
      window.roomcast.fatal.push(data.details);
      // Typical while the daemon restarts its pipeline: start over shortly.
      setPlayerState(`stream error (${data.details}), retrying…`);
      restartPlayer(2000);
    });
    hls.loadSource(PLAYLIST);
    hls.attachMedia(video);
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = PLAYLIST; // Safari plays HLS natively
    video.play().catch(() => {});
    // The native player does not say why it failed: ask once.
    fetch(PLAYLIST, { cache: 'no-store' }).then((r) => { if (r.status === 401) showViewerPrompt(); }).catch(() => {});
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
  window.roomcast.restarts.push($('player-state').textContent);
  clearTimeout(restartTimer);
  stopPlayer();
  restartTimer = setTimeout(startPlayer, delayMs);
}

// Called once a second: report the player, and restart it when no new picture
// came for 10 s (a stream that never started counts too).
function watchPlayer() {
  const video = $('preview');
  if (restartTimer || viewerNeeded) return;
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

// ---------- viewer password (the stream only) ----------

function showViewerPrompt() {
  viewerNeeded = true;
  clearTimeout(restartTimer);
  restartTimer = null;
  stopPlayer();
  const video = $('preview');
  video.removeAttribute('src');
  video.hidden = true;
  $('viewer-form').hidden = false;
  setPlayerState('ask whoever runs this room for the viewer password');
  if (!$('viewer-password').value) $('viewer-password').focus();
}

function hideViewerPrompt() {
  viewerNeeded = false;
  $('viewer-form').hidden = true;
  $('preview').hidden = false;
}

async function submitViewer(event) {
  event.preventDefault();
  const { status, body } = await fetchJSON('/api/viewer-login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ password: $('viewer-password').value }),
  }, 15000).catch((e) => ({ status: 0, body: { error: e.message } }));
  if (status === 200) {
    $('viewer-password').value = '';
    $('viewer-login-result').textContent = '';
    hideViewerPrompt();
    startPlayer();
  } else {
    $('viewer-login-result').textContent = body.error || `HTTP ${status}`;
  }
}

// The admin's card: set or clear the viewer password (never shown back).
function renderViewerState(set) {
  $('viewer-state').textContent = set
    ? 'The stream needs the viewer password (your admin session watches without it).'
    : 'The stream is open to everyone on the LAN.';
  $('viewer-clear').disabled = !set;
}

async function changeViewerPassword(password) {
  const result = $('viewer-result');
  const { status, body } = await fetchJSON('/api/viewer-password', {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ password }),
  }, 15000).catch((e) => ({ status: 0, body: { error: e.message } }));
  result.className = status === 200 ? 'ok' : 'bad';
  if (status !== 200) { result.textContent = body.error || `HTTP ${status}`; return; }
  $('viewer-pw').value = '';
  result.textContent = password === null ? 'Viewer password removed: the stream is open' : 'Viewer password set';
  renderViewerState(body.viewer_password);
}

// The admin's HTTPS card: the certificate in use, upload or reset.
function renderHttps(h) {
  if (!h) return;
  $('https-state').textContent = h.port
    ? `HTTPS on port ${h.port} with ${h.self_signed ? 'a self-signed certificate made by the box (browsers warn: compare the fingerprint)' : 'your certificate'}.${h.only ? ' Plain HTTP redirects to it.' : ''}`
    : 'HTTPS is off (https.port = 0).';
  $('https-fingerprint').textContent = h.fingerprint || '–';
}

async function changeCertificate(method) {
  const result = $('https-result');
  let body;
  if (method === 'PUT') {
    const [cert, key] = [$('https-cert').files[0], $('https-key').files[0]];
    if (!cert || !key) { result.className = 'bad'; result.textContent = 'Choose the certificate and its key'; return; }
    body = JSON.stringify({ cert: await cert.text(), key: await key.text() });
  }
  const r = await fetchJSON('/api/tls', { method, headers: { 'Content-Type': 'application/json' }, body }, 15000)
    .catch((e) => ({ status: 0, body: { error: e.message } }));
  result.className = r.status === 200 ? 'ok' : 'bad';
  result.textContent = r.status === 200 ? 'Done: new HTTPS connections use it' : (r.body.error || `HTTP ${r.status}`);
  if (r.status === 200) renderHttps(r.body);
}

// ---------- status ----------

function renderStatus(s) {
  setRenditionNames(s.renditions);
  const src = s.source || {}, enc = s.encoder || {}, fr = s.frames || {}, m = s.measured || {};
  const rows = [
    ['Measured', `${num(m.fps, 1)} fps, ${num(m.bitrate_kbps)} kbit/s`, 'st-measured'],
    ['Frames', `${num(fr.captured)} captured, ${num(fr.encoded)} encoded, ${num(fr.dropped)} dropped`, 'st-frames'],
    ['Source', `${src.kind ?? '–'} ${num(src.width)}×${num(src.height)} @ ${num(src.fps)} fps`, 'st-source'],
    ...(src.camera ? [['Camera', camera(src.camera), 'st-camera']] : []),
    ['Sound', sound(s.audio), 'st-audio'],
    ['Encoder', `${enc.kind ?? '–'}, target ${num(enc.bitrate_kbps)} kbit/s (restarts: ${num(enc.restarts)})`, 'st-encoder'],
    ['Recording', recording(s.recording), 'st-recording'],
    ['Box', health(s.system || {}), 'st-system'],
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

  // Upstream outputs (RTMP/SRT): state, last error, reconnects.
  const outs = el('table', { id: 'st-outputs' },
    el('thead', {}, el('tr', {}, ...['Upstream', 'State', 'Rate', 'Reconnects', 'Last error'].map((h) => el('th', {}, h)))));
  const obody = el('tbody');
  for (const o of s.outputs || []) {
    obody.append(el('tr', {},
      el('td', { className: 'url' }, o.url),
      el('td', { className: `state state-${o.state}` }, o.enabled === false ? 'disabled' : o.state),
      el('td', {}, o.send_rate_kbps != null ? `${num(o.send_rate_kbps)} kbit/s` : '–'),
      el('td', {}, num(o.reconnects)),
      el('td', { className: 'err-text' }, o.last_error || '')));
  }
  outs.append(obody);

  history.push({ fps: m.fps ?? 0, kbps: m.bitrate_kbps ?? 0 });
  if (history.length > HISTORY) history.shift();
  const parts = [dl, el('div', { className: 'scroll' }, table)];
  if ((s.outputs || []).length) parts.push(el('div', { className: 'scroll' }, outs));
  $('status').replaceChildren(...parts);
  drawChart();
}

const mb = (bytes) => `${num((bytes || 0) / 1048576, 1)} MB`;

function recording(r) {
  if (!r || !r.enabled) return 'off';
  const kept = `${num(r.files_kept)} earlier files kept (${mb(r.kept_bytes)})`;
  if (r.state === 'error') return `ERROR: ${r.last_error} (retrying every few seconds); ${kept}`;
  if (r.state === 'recording') return `recording ${r.file} (${mb(r.file_bytes)}); ${kept}`;
  return `waiting for the stream; ${kept}`;
}

function sound(a) {
  if (!a || a.state === 'off') return 'off (no audio track)';
  const what = a.state === 'silence' ? `SILENCE: ${a.reason || 'no device'}` : `${a.state}, ${a.device || ''}`;
  const level = a.mute ? 'muted' : `gain ${num(a.gain_db)} dB`;
  const drift = a.drift_ppm != null ? `, clock ${num(a.drift_ppm, 1)} ppm` : '';
  return `${what} — ${level}${drift}, ${num(a.frames)} AAC frames`;
}

function camera(c) {
  const what = c.state === 'live' ? `live, ${c.card} ${c.mode}` : `NO SIGNAL: ${c.reason}`;
  const extra = c.warnings && c.warnings.length ? ` (${c.warnings.join('; ')})` : '';
  return `${what} — ${num(c.frames)} frames, ${num(c.dropped)} dropped, opened ${num(c.opens)}×${extra}`;
}

function health(sys) {
  const bits = [];
  if (sys.cpu_percent != null) bits.push(`CPU ${num(sys.cpu_percent, 1)} %`);
  if (sys.load1 != null) bits.push(`load ${num(sys.load1, 2)}`);
  if (sys.soc_temp_c != null) bits.push(`${num(sys.soc_temp_c, 1)} °C`);
  return bits.join(', ') || '–';
}

// The last five minutes of measured fps and bitrate, one sample a second.
const HISTORY = 300;
const history = [];

function drawChart() {
  const canvas = $('chart');
  const w = (canvas.width = canvas.clientWidth || 300), h = (canvas.height = 80);
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, w, h);
  const line = (key, color) => {
    const max = Math.max(1, ...history.map((p) => p[key])) * 1.1;
    g.strokeStyle = color;
    g.beginPath();
    history.forEach((p, i) => {
      const x = w - (history.length - 1 - i) * (w / (HISTORY - 1));
      const y = h - (p[key] / max) * (h - 4) - 2;
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  };
  line('kbps', '#1f6feb');
  line('fps', '#3fb950');
}

async function pollStatus() {
  if (!csrf) { watchPlayer(); setTimeout(pollStatus, 1000); return; } // not logged in
  try {
    const { status, body } = await fetchJSON('/api/status');
    if (status !== 200) throw new Error(body.error || `HTTP ${status}`);
    renderStatus(body);
    renderHttps(body.https);
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

const inputs = () => [...document.querySelectorAll('#settings [data-field]')];

// ---------- devices (cameras, hardware encoders) ----------

let devices = [];
let audioDevices = [];

function option(value, label) { return el('option', { value }, label); }

// Fills the source and encoder pickers from /api/devices; the configured
// value stays selectable even when its device is unplugged right now.
function renderDevices() {
  const cams = devices.filter((d) => d.kind === 'camera');
  const encs = devices.filter((d) => d.kind === 'encoder');
  $('cfg-source').replaceChildren(option('test', 'Test pattern'),
    ...cams.map((d) => option(`v4l2:${d.path}`, `${d.card} (${d.path})`)));
  $('cfg-encoder').replaceChildren(
    option('auto', encs.length ? `Automatic (hardware: ${encs[0].card})` : 'Automatic (openh264)'),
    option('openh264', 'openh264 (software)'),
    ...encs.map((d) => option(`v4l2m2m:${d.path}`, `${d.card} (${d.path})`)),
    option('passthrough', "Camera's own H.264 (pass-through)"));
  $('cfg-audio-source').replaceChildren(
    option('auto', 'Automatic (test tone with the test pattern, else the first sound card)'),
    option('tone', 'Test tone (a beep with each flash)'),
    ...audioDevices.map((d) => option(`alsa:${d.name}`, `${d.description || d.name} (${d.name})`)),
    option('none', 'No sound'));
  for (const id of ['cfg-source', 'cfg-encoder', 'cfg-audio-source']) {
    const want = config && getPath(config, $(id).dataset.field);
    if (want && ![...$(id).options].some((o) => o.value === want)) $(id).append(option(want, `${want} (not present)`));
    if (want) $(id).value = want;
  }
  showModes();
  showAudioModes();
}

function showModes() {
  const dev = devices.find((d) => `v4l2:${d.path}` === $('cfg-source').value);
  $('source-modes').textContent = dev
    ? `Modes: ${dev.modes.map((m) => `${m.fourcc} ${m.width}×${m.height}@${Math.round(m.interval.fps * 100) / 100}`).join(', ')}`
    : '';
}

function showAudioModes() {
  const dev = audioDevices.find((d) => `alsa:${d.name}` === $('cfg-audio-source').value);
  $('audio-modes').textContent = dev
    ? `Rates: ${(dev.rates || []).join(', ')} Hz; channels: ${(dev.channels || []).join(', ')}`
    : '';
}

function loadDevices() {
  return fetchJSON('/api/devices').then(({ status, body }) => {
    if (status === 200) { devices = body.devices || []; audioDevices = body.audio || []; renderDevices(); }
  }).catch(() => {});
}

// Deep equality of JSON values whatever the order of object keys (the box
// answers with its keys sorted).
function same(a, b) {
  const canon = (v) => (Array.isArray(v) ? v.map(canon)
    : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]))
      : v);
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

function getPath(obj, path) { return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj); }
function setPath(obj, path, value) {
  const keys = path.split('.');
  const last = keys.pop();
  const parent = keys.reduce((o, k) => (o[k] ??= {}), obj);
  parent[last] = value;
}

// ---------- renditions (the ladder) ----------

// The renditions an output or the recorder can take: the top one and the
// ladder's, as the box runs them now (status), else as configured.
let renditionNames = ['top'];

function renditionOptions(select, value) {
  const names = renditionNames.slice();
  while (names.length <= value) names.push(`rendition ${names.length}`);
  select.replaceChildren(...names.map((n, i) => option(String(i), n)));
  select.value = String(value ?? 0);
}

function setRenditionNames(list) {
  if (!list || !list.length) return;
  const names = list.map((r, i) => `${i === 0 ? 'top' : `r${i}`}: ${r.width}×${r.height}, ${r.bitrate_kbps} kbit/s`);
  if (JSON.stringify(names) === JSON.stringify(renditionNames)) return;
  renditionNames = names;
  for (const sel of document.querySelectorAll('.rendition-select')) {
    if (document.activeElement !== sel) renditionOptions(sel, Number(sel.value || 0));
  }
}

function rungRow(r = { width: 640, height: 360, bitrate_kbps: 800 }) {
  const num = (cls, value, label) => {
    const i = el('input', { type: 'number', inputMode: 'numeric', className: cls, value });
    i.setAttribute('aria-label', label);
    return i;
  };
  const remove = el('button', { type: 'button', className: 'rung-remove' }, 'Remove');
  const row = el('div', { className: 'rung-row' },
    num('rung-width', r.width, 'width (px)'), '×', num('rung-height', r.height, 'height (px)'),
    num('rung-bitrate', r.bitrate_kbps, 'bitrate (kbit/s)'), 'kbit/s', remove);
  remove.addEventListener('click', () => row.remove());
  return row;
}

function renderLadder(ladder) {
  const mode = ladder == null ? 'auto' : ladder.length ? 'custom' : 'none';
  $('ladder-mode').value = mode;
  $('ladder').replaceChildren(...(ladder || []).map(rungRow));
  showLadderMode();
}

function showLadderMode() {
  const custom = $('ladder-mode').value === 'custom';
  $('ladder').hidden = !custom;
  $('add-rung').hidden = !custom;
  if (custom && !$('ladder').children.length) $('ladder').append(rungRow());
}

// `null`: automatic; `[]`: the top rendition alone; else the rungs.
function formLadder() {
  const mode = $('ladder-mode').value;
  if (mode === 'auto') return null;
  if (mode === 'none') return [];
  return [...document.querySelectorAll('#ladder .rung-row')].map((row) => ({
    width: Number(row.querySelector('.rung-width').value),
    height: Number(row.querySelector('.rung-height').value),
    bitrate_kbps: Number(row.querySelector('.rung-bitrate').value),
  }));
}

// ---------- outputs (upstream destinations) ----------

function outputRow(o = { url: '', enabled: true }) {
  const url = el('input', { type: 'text', className: 'out-url', value: o.url, placeholder: 'rtmp://host/app/key or srt://host:port?mode=caller' });
  url.setAttribute('aria-label', 'destination URL');
  const enabled = el('input', { type: 'checkbox', className: 'out-enabled', checked: o.enabled !== false });
  const remove = el('button', { type: 'button', className: 'out-remove' }, 'Remove');
  const rendition = el('select', { className: 'out-rendition rendition-select' });
  rendition.setAttribute('aria-label', 'rendition');
  renditionOptions(rendition, o.rendition ?? 0);
  const row = el('div', { className: 'out-row' }, url, rendition, el('label', {}, enabled, ' on'), remove);
  if (o.ca_file) row.dataset.caFile = o.ca_file;
  remove.addEventListener('click', () => row.remove());
  return row;
}

function renderOutputs(list, runOnly) {
  $('outputs').replaceChildren(...(list || []).map(outputRow));
  // Outputs from the box's command line (--rtmp, --srt): they run until
  // it restarts, are not stored and cannot be edited here.
  let run = $('run-outputs');
  if (!run) {
    run = el('div', { id: 'run-outputs' });
    $('outputs').after(run);
  }
  run.replaceChildren(...(runOnly || []).map((o) =>
    el('div', { className: 'out-row run-only' }, el('code', {}, o.url), ' from the command line, for this run only')));
}

function formOutputs() {
  return [...document.querySelectorAll('#outputs .out-row')].map((row) => {
    const o = { url: row.querySelector('.out-url').value.trim(), enabled: row.querySelector('.out-enabled').checked };
    const rendition = Number(row.querySelector('.out-rendition').value);
    if (rendition) o.rendition = rendition;
    if (row.dataset.caFile) o.ca_file = row.dataset.caFile;
    return o;
  });
}

function loadConfig() {
  loading ??= fetchJSON('/api/config')
    .then(({ status, body }) => {
      if (status !== 200) throw new Error(body.error || `HTTP ${status}`);
      config = body;
      // Left out of the JSON when 0 (the top rendition).
      if (config.record) config.record.rendition ??= 0;
      for (const sel of document.querySelectorAll('select.rendition-select[data-field]')) {
        renditionOptions(sel, getPath(config, sel.dataset.field) ?? 0);
      }
      renderOutputs(config.outputs, config.run_outputs);
      renderLadder(config.ladder);
      renderDevices();
      for (const input of inputs()) {
        const value = getPath(config, input.dataset.field);
        if (input.type === 'checkbox') input.checked = value === true;
        else if (!input.classList.contains('rendition-select')) input.value = value ?? '';
      }
      $('apply').disabled = false;
      loadDevices();
    })
    .finally(() => { loading = null; });
  return loading;
}

function clearErrors() {
  $('err-outputs').textContent = '';
  $('err-ladder').textContent = '';
  for (const i of document.querySelectorAll('#ladder input')) i.removeAttribute('aria-invalid');
  for (const u of document.querySelectorAll('#outputs .out-url')) u.removeAttribute('aria-invalid');
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
  if (field && field.startsWith('ladder')) {
    $('err-ladder').textContent = reason || message;
    const [, i, key] = field.match(/^ladder\[(\d+)\](?:\.(\w+))?/) || [];
    const row = document.querySelectorAll('#ladder .rung-row')[Number(i)];
    const cls = { width: 'rung-width', height: 'rung-height', bitrate_kbps: 'rung-bitrate' }[key];
    const input = row && cls ? row.querySelector(`.${cls}`) : null;
    if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
    return;
  }
  if (field && field.startsWith('outputs')) {
    $('err-outputs').textContent = message;
    const i = Number((field.match(/^outputs\[(\d+)\]/) || [])[1]);
    const row = document.querySelectorAll('#outputs .out-row')[i];
    if (row) { row.querySelector('.out-url').setAttribute('aria-invalid', 'true'); row.querySelector('.out-url').focus(); }
    return;
  }
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
    if (input.type === 'text' || (input.tagName === 'SELECT' && input.dataset.type !== 'number')) {
      setPath(next, input.dataset.field, input.value);
      continue;
    }
    if ('optional' in input.dataset && input.value.trim() === '') {
      setPath(next, input.dataset.field, null);
      continue;
    }
    const value = input.value.trim() === '' ? NaN : Number(input.value);
    if (!Number.isFinite(value)) {
      showError(input.dataset.field, `${input.dataset.field}: enter a number`, 'enter a number');
      return;
    }
    setPath(next, input.dataset.field, value);
  }
  // Send only what changed: the box keeps everything else as it is (and
  // settings given on its command line stay out of its stored file).
  const patch = {};
  for (const input of inputs()) {
    const value = getPath(next, input.dataset.field);
    if (value !== getPath(config, input.dataset.field)) setPath(patch, input.dataset.field, value);
  }
  const outputs = formOutputs();
  if (!same(outputs, config.outputs || [])) patch.outputs = outputs;
  const ladder = formLadder();
  if (!same(ladder, config.ladder ?? null)) patch.ladder = ladder;
  $('apply').disabled = true;
  $('apply-result').textContent = 'applying…';
  try {
    const { status, body } = await fetchJSON('/api/config', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(patch),
    }, 15000);
    if (status === 200) {
      config = { ...next, outputs, ladder };
      $('apply-result').textContent = 'Applied';
      $('apply-result').className = 'ok';
      // Only picture and HLS changes restart the stream; outputs, camera
      // controls and recording do not.
      if (Object.keys(patch).some((k) => !['outputs', 'camera', 'record'].includes(k))) {
        setPlayerState('restarting the stream…');
        restartPlayer(1000); // the daemon restarts its pipeline: a new stream
      }
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

// ---------- export / import ----------

function exportConfig() {
  const secrets = $('export-secrets').checked ? '?secrets=1' : '';
  // A plain navigation downloads the file; the session cookie goes along.
  window.location.href = `/api/config/export${secrets}`;
}

async function importConfig() {
  const file = $('import-file').files[0];
  if (!file) return;
  const text = await file.text();
  const { status, body } = await fetchJSON('/api/config/import', { method: 'PUT', body: text }, 15000)
    .catch((e) => ({ status: 0, body: { error: e.message } }));
  $('import-result').className = status === 200 ? 'ok' : 'bad';
  $('import-result').textContent = status === 200 ? 'Imported' : body.error || `HTTP ${status}`;
  $('import-file').value = '';
  if (status === 200) { config = null; loadConfig().catch(() => {}); restartPlayer(1000); }
}

// ---------- access ----------

let setupMode = false;

// Hides the admin sections and asks for the password (or, on first start,
// for a new one).
async function showAuth() {
  csrf = null;
  for (const el of document.querySelectorAll('.admin')) el.hidden = true;
  $('logout').hidden = true;
  const { body } = await fetchJSON('/api/session').catch(() => ({ body: {} }));
  setupMode = body.setup_needed === true;
  $('auth-title').textContent = setupMode ? 'Set the admin password' : 'Log in';
  $('auth-submit').textContent = setupMode ? 'Set password' : 'Log in';
  $('auth-confirm-field').hidden = !setupMode;
  // The first password also takes the one-time setup code.
  $('auth-code-field').hidden = !setupMode;
  $('auth-password').autocomplete = setupMode ? 'new-password' : 'current-password';
  $('auth-card').hidden = false;
}

function showAdmin(token, viewerPassword) {
  csrf = token;
  renderViewerState(viewerPassword === true);
  // The admin session unlocks the stream too.
  if (viewerNeeded) { hideViewerPrompt(); startPlayer(); }
  $('auth-card').hidden = true;
  for (const el of document.querySelectorAll('.admin')) el.hidden = false;
  $('logout').hidden = false;
  config = null;
  loadConfig().catch((e) => showError(null, `could not read the settings: ${e.message}`));
}

async function submitAuth(event) {
  event.preventDefault();
  const password = $('auth-password').value;
  const result = $('auth-result');
  result.className = 'bad';
  if (setupMode && password !== $('auth-confirm').value) {
    result.textContent = 'the two passwords differ';
    return;
  }
  const request = setupMode ? { password, setup_code: $('auth-code').value.trim() } : { password };
  if (setupMode && !request.setup_code) {
    result.textContent = 'enter the setup code: where to find it is written under its field';
    return;
  }
  const { status, body } = await fetchJSON(setupMode ? '/api/setup' : '/api/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(request),
  }, 15000).catch((e) => ({ status: 0, body: { error: e.message } }));
  if (status === 200) {
    $('auth-password').value = '';
    $('auth-confirm').value = '';
    $('auth-code').value = '';
    result.textContent = '';
    const session = await fetchJSON('/api/session').catch(() => ({ body: {} }));
    showAdmin(body.csrf, session.body.viewer_password);
  } else {
    result.textContent = body.error || `HTTP ${status}`;
  }
}

async function logout() {
  await fetchJSON('/api/logout', { method: 'POST' }).catch(() => {});
  showAuth();
}

// ---------- start ----------

$('settings').addEventListener('submit', apply);
$('auth-form').addEventListener('submit', submitAuth);
$('logout').addEventListener('click', logout);
$('add-output').addEventListener('click', () => $('outputs').append(outputRow()));
$('add-rung').addEventListener('click', () => $('ladder').append(rungRow()));
$('ladder-mode').addEventListener('change', showLadderMode);
$('cfg-source').addEventListener('change', showModes);
$('cfg-audio-source').addEventListener('change', showAudioModes);
$('export').addEventListener('click', exportConfig);
$('import-file').addEventListener('change', importConfig);
$('viewer-form').addEventListener('submit', submitViewer);
$('viewer-pw-form').addEventListener('submit', (e) => { e.preventDefault(); changeViewerPassword($('viewer-pw').value); });
$('viewer-clear').addEventListener('click', () => changeViewerPassword(null));
$('https-form').addEventListener('submit', (e) => { e.preventDefault(); changeCertificate('PUT'); });
$('https-reset').addEventListener('click', () => changeCertificate('DELETE'));
fetchJSON('/api/session')
  .then(({ body }) => (body.logged_in && body.csrf ? showAdmin(body.csrf, body.viewer_password) : showAuth()))
  .catch(() => showAuth());
pollStatus();
startPlayer();
