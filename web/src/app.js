// creditd dashboard: one account's balances, burn, breakdowns, forecast, alerts and audit.
// Plain ES module, no build step. Chart.js is loaded before this module (vendor/chart.umd.min.js).
// Rules the page keeps: the key lives in sessionStorage only; every fetch error is caught and
// shown in the page (never thrown, never logged); no inline styles (CSSOM and classes only);
// every credit figure printed is the API's exact decimal (answers are read by readJson, which
// keeps fractions and big integers as their text; sums and quotients are BigInt millicredits).

const REFRESH_MS = 3000;
const KEY_STORE = 'creditd.key';
const ACCOUNT_STORE = 'creditd.account';
const GROUPS = { kind: 'Kind', user: 'User', file: 'File', feature: 'Feature', model: 'Model' };
const COLORS = { used: '#4f46e5', held: '#f59e0b', avail: '#d9dfeb', mean: '#0f9d58', spike: '#dc2626', bar: '#818cf8', barSpike: '#f87171' };
const ADVICE = { stay: 'Stay on this plan', upgrade_now: 'Upgrade now', upgrade_next_cycle: 'Upgrade next cycle', downgrade: 'Downgrade' };
const MISSING_RETRY_MS = 30000; // a route that answered 404 "no such route" is asked again after this
const SPIKE_FACTOR_DEFAULT = 2; // DESIGN.md: burn_spike default factor, for a server whose burn answer lacks `factor`
const CAN_LIST_STORE = 'creditd.lists'; // "1" once this tab's key has listed the accounts (admin, service)
const ALERTS_SHOWN = 20;      // alerts listed before "and N more"
const ALERTS_PAGES_MAX = 10;  // pages of 1,000 alerts read per refresh; beyond that "more than N"
const ACCOUNT_ID = /^[A-Za-z0-9._:-]{1,64}$/; // API.md: ids are 1-64 characters of [A-Za-z0-9._:-]

const $ = (id) => document.getElementById(id);

const state = {
  key: null,
  account: null,
  accounts: null,   // list from GET /v1/accounts when the key may list accounts (admin, service)
  plans: new Map(), // plan id -> plan
  pool: null,
  pools: [],
  groupBy: 'kind',
  gen: 0,           // bumped on every account switch or sign-out: stale answers are dropped
  timer: null,
  inFlight: false,
  charts: { burn: null, gauges: new Map() },
  auditUrl: null,      // the report as it came (Download)
  auditViewUrl: null,  // the report without inline styles (the viewer)
  lastAccount: null,
  lastBurn: null,
  burnTried: false,  // the burn route has answered (or failed) once for this account
  alertsShown: ALERTS_SHOWN,
  missing: new Map(), // analytics route -> when it last answered 404 not_found
  note: '',           // a banner kept over refreshes (a refused account switch), until the next switch
};

// ---------- exact JSON numbers ----------
// A JSON number that a double cannot hold exactly (any fraction, or an integer past 2^53),
// kept as its source text. It reads as a Number where a float is enough (valueOf: charts,
// ratios, comparisons); credits() formats its text exactly.
class Dec {
  constructor(text) { this.text = text; }
  valueOf() { return Number(this.text); }
  toString() { return this.text; }
  toJSON() { return Number(this.text); }
}
const NUM_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const STR_RE = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
// JSON.parse, except that numbers other than safe integers become Dec. Throws SyntaxError.
function readJson(text) {
  let i = 0;
  const bad = () => { throw new SyntaxError(`JSON: unexpected input at ${i}`); };
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const token = (re) => { re.lastIndex = i; const m = re.exec(text); if (!m) bad(); i = re.lastIndex; return m[0]; };
  const put = (o, k, v) => { if (k === '__proto__') Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true }); else o[k] = v; };
  function value(depth) {
    if (depth > 64) bad();
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const o = {};
      ws();
      if (text[i] === '}') { i++; return o; }
      for (;;) {
        ws();
        if (text[i] !== '"') bad();
        const k = JSON.parse(token(STR_RE));
        ws();
        if (text[i++] !== ':') bad();
        put(o, k, value(depth + 1));
        ws();
        const d = text[i++];
        if (d === '}') return o;
        if (d !== ',') bad();
      }
    }
    if (c === '[') {
      i++;
      const a = [];
      ws();
      if (text[i] === ']') { i++; return a; }
      for (;;) {
        a.push(value(depth + 1));
        ws();
        const d = text[i++];
        if (d === ']') return a;
        if (d !== ',') bad();
      }
    }
    if (c === '"') return JSON.parse(token(STR_RE));
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) { i += word.length; return v; }
    }
    const n = token(NUM_RE);
    const f = Number(n);
    return /^-?[0-9]+$/.test(n) && Number.isSafeInteger(f) ? f : new Dec(n);
  }
  const v = value(0);
  ws();
  if (i !== text.length) bad();
  return v;
}

// ---------- exact money ----------
// Millicredits (BigInt) of a JSON number (Dec or Number) or decimal text; null when it is
// none. More than three decimals (a computed float) round half away from zero.
function milli(v) {
  let s;
  if (v instanceof Dec || typeof v === 'string') s = String(v);
  else if (typeof v === 'number' && Number.isFinite(v)) s = Number.isInteger(v) ? BigInt(v).toString() : v.toFixed(3);
  else return null;
  const m = /^([+-]?)([0-9]+)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?$/.exec(s.trim());
  if (!m) return null;
  let digits = m[2] + (m[3] || '');
  let scale = (m[3] || '').length - Number(m[4] || 0); // value = digits / 10^scale
  if (scale < 3) { digits += '0'.repeat(3 - scale); scale = 3; }
  let q = BigInt(digits);
  if (scale > 3) {
    const div = 10n ** BigInt(scale - 3);
    const r = q % div;
    q /= div;
    if (r * 2n >= div) q += 1n;
  }
  return m[1] === '-' ? -q : q;
}
// "1,234,567.89": grouped thousands, up to three decimals without trailing zeros.
function formatMilli(q) {
  const neg = q < 0n;
  const a = neg ? -q : q;
  const int = (a / 1000n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const frac = (a % 1000n).toString().padStart(3, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${int}${frac ? `.${frac}` : ''}`;
}
// A decimal as (integer, power of ten): "1.5" -> [15n, 1n]; for exact products.
function decimalParts(v) {
  const m = /^([+-]?)([0-9]+)(?:\.([0-9]*))?$/.exec(String(v));
  if (!m) return null;
  const n = BigInt(m[2] + (m[3] || ''));
  return [m[1] === '-' ? -n : n, 10n ** BigInt((m[3] || '').length)];
}

// ---------- formatting ----------
const nf = new Intl.NumberFormat('en-US', { maximumFractionDigits: 3 });
const nf0 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
const usd = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', maximumFractionDigits: 2, minimumFractionDigits: 0 });
const dtf = new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZone: 'UTC' });
const df = new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' });
const dfy = new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric', year: 'numeric', timeZone: 'UTC' });
const tf = new Intl.DateTimeFormat('en-US', { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });

const isNum = (v) => (typeof v === 'number' && Number.isFinite(v)) || (v instanceof Dec && Number.isFinite(Number(v)));
const toNum = (v) => (isNum(v) ? Number(v) : null); // a float, for charts and ratios only
const money = (v) => (isNum(v) ? milli(v) : null); // millicredits of an API figure, or null
const credits = (v) => { const q = money(v); return q === null ? '–' : formatMilli(q); };
// A share as a percentage with one decimal, never rounded up to 100 % when it is not 100 %
// (1,999.979 of 2,000 is 99.9 %, not 100 %).
function pctNum(f, full = f >= 1) {
  let s = nf1.format(f * 100);
  if (s === '100' && !full) s = '99.9';
  return s;
}
const pct = (f) => (isNum(f) ? `${pctNum(Number(f))}%` : '–');
// x / y millicredits as a percentage (exact at any size: 100 % only when x >= y).
function pctMilli(x, y) {
  if (x === null || y === null || y <= 0n) return '–';
  return `${pctNum(Number((x * 1000000000n) / y) / 1e9, x >= y)}%`;
}
// A signed figure with a real minus sign (U+2212), as the dollar amounts are written.
const signed = (v, fmt) => { const s = fmt.format(Math.abs(Number(v))); return v < 0 && /[1-9]/.test(s) ? `−${s}` : s; };
const when = (iso) => { const t = Date.parse(iso); return iso && Number.isFinite(t) ? `${dtf.format(t)} UTC` : '–'; };
const day = (iso) => { const t = Date.parse(iso); return iso && Number.isFinite(t) ? df.format(t) : '–'; };
const dayYear = (iso) => { const t = Date.parse(iso); return iso && Number.isFinite(t) ? dfy.format(t) : '–'; };

function el(tag, opts = {}, ...children) {
  const e = document.createElement(tag);
  if (opts.cls) e.className = opts.cls;
  if (opts.text !== undefined) e.textContent = opts.text;
  if (opts.title) e.title = opts.title;
  if (opts.test) e.dataset.test = opts.test;
  for (const c of children) if (c) e.append(c);
  return e;
}
// A path as text with a line-break chance after each "/" (a <wbr>, no markup from the data),
// so that narrow cells wrap file names between folders rather than inside a name.
function pathNode(cls, text, test) {
  const e = el('span', { cls, test });
  const parts = String(text).split('/');
  parts.forEach((p, i) => {
    e.append(document.createTextNode(i < parts.length - 1 ? `${p}/` : p));
    if (i < parts.length - 1) e.append(document.createElement('wbr'));
  });
  return e;
}
// Sets an element's text; a figure such as "999,999,999,999.999" may break only after its
// thousands commas (a <wbr> after each), never inside a group of digits.
function fillText(e, text) {
  if (e.textContent === text) return;
  if (!/,\d/.test(text)) { e.textContent = text; return; }
  const parts = text.split(/(?<=,)(?=\d)/);
  e.replaceChildren(...parts.flatMap((part, i) => (i ? [document.createElement('wbr'), part] : [part])));
}
const setText = (id, text) => { const e = $(id); if (e) fillText(e, text); };

// ---------- HTTP ----------
// Resolves to {ok, status, data} or {ok: false, status, error: {code, message}}; never rejects.
async function api(path, { raw = false } = {}) {
  const key = state.key;
  let res;
  try {
    res = await fetch(path, { headers: { Authorization: `Bearer ${key}` }, cache: 'no-store', credentials: 'omit' });
  } catch {
    return { ok: false, status: 0, error: { code: 'network', message: 'The server cannot be reached.' } };
  }
  try {
    if (res.ok && raw) return { ok: true, status: res.status, data: await res.blob() };
    const text = await res.text();
    let body = null;
    try { body = text ? readJson(text) : null; } catch { body = null; }
    if (!res.ok) {
      // An answer that is not creditd's JSON error (a proxy's HTML page, say) is named by its
      // status line, not shown as markup.
      const error = body && body.error && typeof body.error.message === 'string' ? body.error
        : { code: `http_${res.status}`, message: `${res.statusText || 'error'} (not an answer of the creditd API)` };
      return { ok: false, status: res.status, error };
    }
    return { ok: true, status: res.status, data: body };
  } catch {
    return { ok: false, status: res.status || 0, error: { code: 'network', message: 'The answer was cut off.' } };
  }
}

const acctPath = (suffix = '') => `/v1/accounts/${encodeURIComponent(state.account)}${suffix}`;
const withPool = (q = '') => {
  const p = new URLSearchParams(q);
  if (state.pool) p.set('pool', state.pool);
  const s = p.toString();
  return s ? `?${s}` : '';
};
const notRoute = (r) => r.status === 404 && r.error && r.error.code === 'not_found';

function authMessage(r, account) {
  if (r.status === 401) return 'This key was not accepted (401 unauthorized). Check that you pasted the whole key, and that it has not been revoked.';
  if (r.status === 403) return `This key cannot read account “${account}” (403 forbidden). A read key opens only its own account: check the account id.`;
  if (r.status === 404) return `There is no account “${account}” (404).`;
  if (r.status === 0) return 'The server cannot be reached. Is creditd running?';
  return `The server answered ${r.status}: ${r.error ? r.error.message : 'unknown error'}.`;
}

// ---------- login ----------
function showLogin(message) {
  stopLoop();
  $('dash-view').hidden = true;
  $('account-bar').hidden = true;
  $('topbar-right').hidden = true;
  $('login-view').hidden = false;
  const err = $('login-error');
  err.hidden = !message;
  err.textContent = message || '';
  const params = new URLSearchParams(location.search);
  if (!$('account-input').value) $('account-input').value = params.get('account') || sessionStorage.getItem(ACCOUNT_STORE) || '';
  ($('key-input').value ? $('account-input') : $('key-input')).focus();
}

async function listAccounts() {
  const all = [];
  let after = null;
  for (let page = 0; page < 20; page++) {
    const q = new URLSearchParams({ limit: '1000' });
    if (after) q.set('after', after);
    const r = await api(`/v1/accounts?${q}`);
    if (!r.ok) return page === 0 ? r : { ok: true, data: all };
    all.push(...(r.data.accounts || []));
    after = r.data.next;
    if (!after) break;
  }
  return { ok: true, data: all };
}

async function connect(key, account) {
  // An id the API cannot hold (typed, or from ?account=) is named as such, not sent.
  if (account && !ACCOUNT_ID.test(account)) {
    showLogin(`“${account}” is not an account id: an id is 1 to 64 letters, digits, “.”, “_”, “:” or “-”.`);
    return false;
  }
  if (sessionStorage.getItem(KEY_STORE) !== key) sessionStorage.removeItem(CAN_LIST_STORE);
  state.key = key;
  state.gen++;
  const gen = state.gen;
  state.accounts = null;
  // Admin and service keys may list the accounts; an account's own key (the dashboard's usual
  // key, DESIGN.md section 5) gets 403 there. So the list is asked for only when no account is
  // named, or when this key has listed them before in this tab: a read key opening its own
  // account makes no failing request.
  if (!account || sessionStorage.getItem(CAN_LIST_STORE) === '1') {
    const list = await listAccounts();
    if (gen !== state.gen) return false;
    if (!list.ok && (list.status === 401 || list.status === 0)) { state.key = null; showLogin(authMessage(list, account)); return false; }
    state.accounts = list.ok ? list.data : null;
    if (list.ok) sessionStorage.setItem(CAN_LIST_STORE, '1');
  }
  if (!account) {
    if (state.accounts && state.accounts.length) account = state.accounts[0].account_id;
    else if (state.accounts) { state.key = null; showLogin('This key reaches no account yet: create one first.'); return false; }
    else { state.key = null; showLogin('This key belongs to one account: type the account id next to it.'); return false; }
  }
  const r = await api(`/v1/accounts/${encodeURIComponent(account)}`);
  if (gen !== state.gen) return false;
  if (!r.ok) { state.key = null; showLogin(authMessage(r, account)); return false; }
  sessionStorage.setItem(KEY_STORE, key);
  sessionStorage.setItem(ACCOUNT_STORE, account);
  const plans = await api('/v1/plans');
  if (plans.ok && plans.data && Array.isArray(plans.data.plans)) state.plans = new Map(plans.data.plans.map((p) => [p.id, p]));
  openDashboard(account, r.data);
  return true;
}

function signOut(message) {
  state.gen++;
  stopLoop();
  state.key = null;
  state.account = null;
  state.note = '';
  sessionStorage.removeItem(KEY_STORE);
  sessionStorage.removeItem(CAN_LIST_STORE);
  $('key-input').value = '';
  resetAudit();
  showLogin(message);
}

// ---------- dashboard ----------
function openDashboard(account, accountData) {
  state.account = account;
  state.pool = null;
  state.pools = [];
  state.lastBurn = null;
  state.burnTried = false;
  state.alertsShown = ALERTS_SHOWN;
  state.missing.clear();
  const url = new URL(location.href);
  url.searchParams.set('account', account);
  history.replaceState(null, '', url);
  $('login-view').hidden = true;
  $('dash-view').hidden = false;
  $('account-bar').hidden = false;
  $('topbar-right').hidden = false;
  $('banner').hidden = true;
  state.note = '';
  renderPicker();
  if (accountData) renderAccount(accountData);
  else clearAccount();
  for (const e of document.querySelectorAll('[data-panel]')) e.hidden = true;
  for (const e of document.querySelectorAll('[data-na]')) { e.hidden = false; e.className = 'na'; e.textContent = 'Loading…'; }
  $('audit-status').hidden = true;
  startLoop();
}

function renderPicker() {
  const picker = $('account-picker');
  const name = $('account-name');
  if (!state.accounts) { picker.hidden = true; name.hidden = false; name.textContent = state.account; return; }
  name.hidden = true;
  picker.hidden = false;
  picker.replaceChildren();
  const ids = state.accounts.map((a) => a.account_id);
  if (!ids.includes(state.account)) ids.unshift(state.account);
  for (const id of ids) {
    const o = el('option', { text: id });
    o.value = id;
    picker.append(o);
  }
  picker.value = state.account;
}

// Opens another account of the picker. A passing failure of its first GET (network, 429,
// 5xx) opens it without figures, and the refresh loop asks again ("offline, retrying"); a
// refusal (403, 404, ...) puts the picker back and keeps refreshing the account shown. The
// page never shows one account's figures under another's name.
function switchAccount(id) {
  const prev = state.account;
  state.gen++;
  const gen = state.gen;
  stopLoop();
  resetAudit();
  state.note = '';
  api(`/v1/accounts/${encodeURIComponent(id)}`).then((r) => {
    if (gen !== state.gen) return;
    if (r.ok) { sessionStorage.setItem(ACCOUNT_STORE, id); openDashboard(id, r.data); return; }
    if (r.status === 401) { signOut('The server no longer accepts this key (401 unauthorized). Enter a valid key.'); return; }
    if (r.status === 0 || r.status === 429 || r.status >= 500) {
      sessionStorage.setItem(ACCOUNT_STORE, id);
      openDashboard(id, null);
      return;
    }
    $('account-picker').value = prev;
    state.note = `Could not open “${id}”: ${authMessage(r, id)} Still showing “${prev}”.`;
    showBanner(state.note, true);
    startLoop();
  });
}

function showBanner(message, warn = false) {
  const b = $('banner');
  b.hidden = !message;
  b.textContent = message || '';
  b.className = warn ? 'banner warn' : 'banner';
}

function stopLoop() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

function startLoop() {
  stopLoop();
  refresh();
}

function schedule(gen) {
  if (gen !== state.gen) return;
  stopLoop();
  state.timer = setTimeout(() => refresh(), REFRESH_MS);
}

async function refresh() {
  if (!state.key || !state.account) return;
  if (document.hidden) return; // resumed by visibilitychange
  const gen = state.gen;
  if (state.inFlight) { schedule(gen); return; }
  state.inFlight = true;
  try {
    const acc = await api(acctPath());
    if (gen !== state.gen) return;
    if (!acc.ok) {
      if (acc.status === 401) { signOut('The server no longer accepts this key (401 unauthorized). Enter a valid key.'); return; }
      const live = $('live');
      live.classList.add('stale');
      setText('updated-text', acc.status === 0 ? 'offline, retrying' : 'error, retrying');
      showBanner(authMessage(acc, state.account), acc.status === 0);
      return;
    }
    renderAccount(acc.data);
    const grp = state.groupBy;
    const [usage, hot, burn, forecast, loops, cache, alerts] = await Promise.all([
      analytics('usage', withPool({ group_by: grp })),
      analytics('hot-files', withPool({ limit: '8' })),
      analytics('burn', withPool()),
      analytics('forecast', withPool()),
      analytics('regression-loops', withPool()),
      analytics('cache-stats', withPool()),
      alertsAll(),
    ]);
    if (gen !== state.gen) return;
    showBanner(state.note, Boolean(state.note));
    if (grp === state.groupBy) panel('usage', usage, renderUsage);
    panel('hot', hot, renderHot);
    state.burnTried = true;
    if (!burn.ok) state.lastBurn = null;
    panel('burn', burn, renderBurn);
    panel('forecast', forecast, renderForecast);
    panel('loops', loops, renderLoops);
    panel('cache', cache, renderCache);
    panel('alerts', alerts, renderAlerts);
    renderCycle();
    $('live').classList.remove('stale');
    setText('updated-text', `updated ${tf.format(new Date())}`);
  } catch (e) {
    // A rendering bug must not stop the refresh loop; show it instead of logging it.
    showBanner(`The dashboard could not show the latest figures (${e && e.message ? e.message : e}).`, true);
  } finally {
    state.inFlight = false;
    schedule(gen);
  }
}

// An analytics route: while the server answers 404 "no such route" for it, it is asked again
// only every MISSING_RETRY_MS (the panel keeps saying "not available"), not on every refresh.
async function analytics(route, query) {
  const since = state.missing.get(route);
  if (since !== undefined && Date.now() - since < MISSING_RETRY_MS) return { ok: false, status: 404, error: { code: 'not_found', message: 'no such route' } };
  const r = await api(acctPath(`/${route}${query}`));
  if (notRoute(r)) state.missing.set(route, Date.now());
  else state.missing.delete(route);
  return r;
}

// Every alert of the pool, following `next` (the route answers pages in firing order), so
// that the list can say how many it does not show. At most ALERTS_PAGES_MAX pages.
async function alertsAll() {
  const all = [];
  let after = null;
  for (let page = 0; page < ALERTS_PAGES_MAX; page++) {
    const q = { limit: '1000' };
    if (after) q.after = after;
    const r = await analytics('alerts', withPool(q));
    if (!r.ok || !r.data) return page === 0 ? r : { ok: true, status: 200, data: { alerts: all, more: true } };
    all.push(...(Array.isArray(r.data.alerts) ? r.data.alerts : []));
    after = r.data.next;
    if (!after) return { ok: true, status: 200, data: { alerts: all, more: false } };
  }
  return { ok: true, status: 200, data: { alerts: all, more: true } };
}

function panel(name, r, render) {
  const body = document.querySelector(`[data-panel="${name}"]`);
  const na = document.querySelector(`[data-na="${name}"]`);
  if (r.ok && r.data) {
    render(r.data);
    body.hidden = false;
    na.hidden = true;
    return;
  }
  body.hidden = true;
  na.hidden = false;
  if (notRoute(r)) {
    na.className = 'na';
    na.textContent = 'Not available on this server yet.';
  } else {
    na.className = 'na err';
    na.textContent = r.status === 0 ? 'Cannot reach the server.' : `Could not load (${r.status}): ${r.error ? r.error.message : 'error'}`;
  }
}

// ---------- account: gauges and cycle ----------
function renderAccount(a) {
  state.lastAccount = a;
  const plan = state.plans.get(a.plan);
  setText('plan-badge', plan ? plan.name : a.plan);
  setText('status-badge', a.status);
  $('status-badge').className = a.status === 'open' ? 'badge muted' : 'badge danger';
  // A closed account keeps its events and figures but can no longer spend (API.md: later
  // mutations get 409 account_closed): say so above everything else.
  const closed = a.status === 'closed';
  $('closed-banner').hidden = !closed;
  if (closed) setText('closed-banner', `Account “${a.account_id}” is closed: it can no longer spend credits. The figures below are its history.`);
  document.body.classList.toggle('is-closed', closed);
  setText('account-name', a.account_id);
  const pools = Object.keys(a.pools || {});
  if (!state.pool || !pools.includes(state.pool)) state.pool = pools[0] || null;
  renderPoolSwitch(pools);
  renderGauges(a.pools || {});
  const pend = $('pending-plan');
  if (a.pending_plan) {
    const p = state.plans.get(a.pending_plan);
    pend.hidden = false;
    pend.textContent = `Changes to ${p ? p.name : a.pending_plan} at the next cycle.`;
  } else pend.hidden = true;
  renderCycle();
}

// The account bar, gauges and cycle card of an account whose figures have not come yet.
function clearAccount() {
  state.lastAccount = null;
  setText('plan-badge', '–');
  setText('status-badge', '–');
  $('status-badge').className = 'badge muted';
  $('closed-banner').hidden = true;
  document.body.classList.remove('is-closed');
  setText('account-name', state.account);
  $('pending-plan').hidden = true;
  renderPoolSwitch([]);
  renderGauges({});
  $('days-left').parentElement.classList.remove('unknown');
  for (const id of ['days-left', 'cycle-pct', 'cycle-start', 'cycle-end', 'cycle-reset', 'cycle-plan', 'cycle-budget']) setText(id, '–');
  setText('days-left-unit', 'days left');
  $('cycle-fill').style.width = '0%';
}

function renderPoolSwitch(pools) {
  const box = $('pool-switch');
  if (pools.length < 2) { box.hidden = true; state.pools = pools; return; }
  box.hidden = false;
  if (pools.join('\n') !== state.pools.join('\n')) {
    const sel = el('select', { test: 'pool-picker' });
    sel.setAttribute('aria-label', 'Pool for the analytics');
    for (const p of pools) { const o = el('option', { text: `${p} pool` }); o.value = p; sel.append(o); }
    sel.addEventListener('change', () => { state.pool = sel.value; startLoop(); });
    box.replaceChildren(sel);
  }
  box.firstChild.value = state.pool;
  state.pools = pools;
}

function renderGauges(pools) {
  const box = $('gauges');
  const names = Object.keys(pools);
  const existing = [...box.children].map((c) => c.dataset.pool);
  if (names.join('\n') !== existing.join('\n')) {
    for (const ch of state.charts.gauges.values()) ch.destroy();
    state.charts.gauges.clear();
    box.replaceChildren(...names.map(buildGauge));
  }
  for (const n of names) updateGauge(n, pools[n]);
}

function figure(label, swatch, test, extra) {
  const lab = el('span', { cls: 'label' }, swatch ? el('span', { cls: `swatch ${swatch}` }) : null, label);
  return el('div', { cls: 'figure' }, lab, el('span', { cls: extra ? 'value small-value' : 'value', text: '–', test }), extra || null);
}

function buildGauge(name) {
  const card = el('article', { cls: 'card', test: `pool-${name}` });
  card.dataset.pool = name;
  const canvas = el('canvas');
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `${name} pool gauge`);
  const center = el('div', { cls: 'gauge-center' }, el('div', { cls: 'pct', test: `pool-${name}-pct` }), el('div', { cls: 'sub', text: 'of the cycle used' }));
  const gbox = el('div', { cls: 'gauge-box' }, canvas, center);
  const figs = el('div', { cls: 'figures' },
    figure('Used', 'used', `pool-${name}-used`),
    figure('Held', 'held', `pool-${name}-held`),
    figure('Available', 'avail', `pool-${name}-available`),
    figure('Allowance', null, `pool-${name}-allowance`),
    figure('Extra (packs, grants)', null, `pool-${name}-extra`),
    figure('Daily cap', null, `pool-${name}-daily-cap`, el('div', { cls: 'meter' }, el('div', { cls: 'meter-fill' }))));
  card.append(el('h2', { text: `${name} pool` }), el('div', { cls: 'gauge-card' }, gbox, figs));
  if (window.Chart) {
    const chart = new window.Chart(canvas, {
      type: 'doughnut',
      data: { labels: ['Used', 'Held', 'Available'], datasets: [{ data: [0, 0, 1], backgroundColor: [COLORS.used, COLORS.held, COLORS.avail], borderWidth: 0 }] },
      options: {
        responsive: true, maintainAspectRatio: false, animation: { duration: 300 },
        rotation: -90, circumference: 180, cutout: '72%',
        // The tooltip prints the API's figures (the slices are floats, and clamped at 0).
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => ` ${c.label}: ${credits(c.chart.$exact ? c.chart.$exact[c.dataIndex] : c.raw)}` } } },
      },
    });
    state.charts.gauges.set(name, chart);
  }
  return card;
}

function updateGauge(name, p) {
  const card = document.querySelector(`[data-pool="${CSS.escape(name)}"]`);
  if (!card) return;
  const q = (t) => card.querySelector(`[data-test="pool-${CSS.escape(name)}-${t}"]`);
  const allowance = money(p.allowance) ?? 0n, extra = money(p.extra) ?? 0n;
  fillText(q('used'), credits(p.used));
  fillText(q('held'), credits(p.held));
  fillText(q('available'), credits(p.available));
  fillText(q('allowance'), credits(p.allowance));
  fillText(q('extra'), credits(p.extra));
  q('pct').textContent = pctMilli(money(p.used), allowance + extra);
  const capText = q('daily-cap');
  const fill = card.querySelector('.meter-fill');
  const cap = capToday(p);
  if (cap) {
    capText.textContent = `${formatMilli(cap.counted)} / ${formatMilli(cap.cap)}${cap.reached ? ' · reached' : ''}`;
    const held = cap.exact ? `, ${formatMilli(cap.counted - cap.used)} held by today's holds` : '';
    capText.title = `${formatMilli(cap.used)} spent today${held}, of a daily cap of ${formatMilli(cap.cap)}; ${credits(p.available_now)} available now`;
    const f = cap.cap > 0n ? Math.min(1, Number((cap.counted * 10000n) / cap.cap) / 10000) : 1;
    fill.style.width = `${(f * 100).toFixed(1)}%`;
    fill.className = cap.reached || f >= 1 ? 'meter-fill danger' : f >= 0.8 ? 'meter-fill warn' : 'meter-fill';
    fill.parentElement.hidden = false;
  } else {
    capText.textContent = 'none';
    capText.title = '';
    fill.parentElement.hidden = true;
  }
  const chart = state.charts.gauges.get(name);
  if (chart) {
    const used = Math.max(0, toNum(p.used) || 0), held = Math.max(0, toNum(p.held) || 0), avail = Math.max(0, toNum(p.available) || 0);
    const data = used + held + avail > 0 ? [used, held, avail] : [0, 0, 1];
    chart.$exact = used + held + avail > 0 ? [p.used, p.held, p.available] : [0, 0, 0];
    const ds = chart.data.datasets[0];
    if (ds.data.join() !== data.join()) { ds.data = data; chart.update(); }
  }
}

// What today's daily cap counts (DESIGN.md: spent today + held by holds placed today), in
// millicredits, or null for a pool without a cap. The account view gives used_today and
// available_now = min(available, cap − used_today − held_today): when available_now is below
// available the cap is what binds and counted = cap − available_now exactly; otherwise the
// pool binds, today's holds are not told apart and counted is used_today (plus nothing held,
// when the pool holds nothing). reached: nothing more can be spent today under the cap.
function capToday(p) {
  const cap = money(p.daily_cap);
  if (cap === null) return null;
  const used = money(p.used_today) ?? 0n;
  const now = money(p.available_now);
  const avail = money(p.available);
  const held = money(p.held) ?? 0n;
  const capBinds = now !== null && avail !== null && now < avail;
  let counted = capBinds ? cap - now : used;
  if (counted < used) counted = used;
  const exact = capBinds || held === 0n;
  return { cap, used, counted, exact, reached: counted >= cap || (capBinds && now <= 0n) };
}

// "Now" for the cycle: the server's clock instant from the burn answer (`now`, which may be a
// manual clock in a demo or test). Without a burn answer (an older server, or the route
// failed) the browser's clock. Undefined while the first burn answer is awaited; null when the
// instant is outside the cycle.
function cycleNow(cycle) {
  const start = Date.parse(cycle.start), end = Date.parse(cycle.end);
  let now;
  const server = state.lastBurn ? Date.parse(state.lastBurn.now) : NaN;
  if (Number.isFinite(server)) now = server;
  else if (state.burnTried) now = Date.now();
  else return undefined;
  if (now < start || now > end) return null;
  return now;
}

// "Budget per day left": available / days left, floored to 0.001 in millicredits (9,999.96
// over 12 days is 833.33 a day, 1.005 over 1 day is 1.005); nothing available is 0 a day.
function budgetPerDay(available, days) {
  const q = money(available);
  if (q === null || !(days >= 1)) return '–';
  return `${formatMilli(q > 0n ? q / BigInt(days) : 0n)} a day`;
}

function renderCycle() {
  const a = state.lastAccount;
  if (!a || !a.cycle) return;
  const start = Date.parse(a.cycle.start), end = Date.parse(a.cycle.end);
  if (!Number.isFinite(start) || !Number.isFinite(end) || end <= start) return;
  setText('cycle-start', dayYear(a.cycle.start));
  setText('cycle-end', dayYear(a.cycle.end));
  // A closed account never resets (api-notes: no reset, rollover or grant expiry renews it).
  setText('cycle-reset', a.status === 'closed' ? 'never (the account is closed)' : when(a.cycle.end));
  const plan = state.plans.get(a.plan);
  const pool = state.pool && a.pools ? a.pools[state.pool] : null;
  const allowance = plan && plan.pools && state.pool && plan.pools[state.pool] ? plan.pools[state.pool].allowance : pool ? pool.allowance : null;
  setText('cycle-plan', isNum(allowance) ? `${credits(allowance)} credits (${plan ? plan.name : a.plan})` : '–');
  const now = cycleNow(a.cycle);
  const big = $('days-left').parentElement;
  const fill = $('cycle-fill');
  const budgetLabel = $('cycle-budget-label');
  if (a.status === 'closed') {
    // No days left to spend and no budget per day: the account cannot spend any more.
    big.classList.add('unknown');
    setText('days-left', 'Closed');
    setText('days-left-unit', 'no more spending');
    setText('cycle-pct', now ? `${pct((now - start) / (end - start))} through` : '–');
    fill.style.width = now ? `${(((now - start) / (end - start)) * 100).toFixed(1)}%` : '0%';
    budgetLabel.hidden = true;
    $('cycle-budget').hidden = true;
    return;
  }
  budgetLabel.hidden = false;
  $('cycle-budget').hidden = false;
  if (now === undefined) {
    big.classList.remove('unknown');
    setText('days-left', '–');
    setText('cycle-pct', '–');
    setText('cycle-budget', '–');
    return;
  }
  const daysLeft = now === null ? null : (end - now) / 86400000;
  setText('cycle-budget', pool && daysLeft !== null && daysLeft > 0 ? budgetPerDay(pool.available, Math.max(1, Math.ceil(daysLeft))) : '–');
  if (now === null) {
    big.classList.add('unknown');
    setText('days-left', `ends ${dayYear(a.cycle.end)}`);
    setText('days-left-unit', '');
    setText('cycle-pct', 'server clock outside the cycle');
    fill.style.width = '0%';
    return;
  }
  big.classList.remove('unknown');
  const f = (now - start) / (end - start);
  const left = Math.max(0, Math.ceil((end - now) / 86400000));
  setText('days-left', nf0.format(left));
  setText('days-left-unit', left === 1 ? 'day left' : 'days left');
  setText('cycle-pct', `${pct(f)} through`);
  fill.style.width = `${(f * 100).toFixed(1)}%`;
}

// ---------- analytics panels ----------
function emptyRow(cols, text) {
  const tr = el('tr', { cls: 'empty' });
  const td = el('td', { text });
  td.colSpan = cols;
  tr.append(td);
  return tr;
}

function renderUsage(d) {
  setText('usage-key-head', GROUPS[state.groupBy] || state.groupBy);
  setText('usage-total', credits(d.total));
  const rows = Array.isArray(d.rows) ? d.rows : [];
  const body = $('usage-rows');
  if (!rows.length) { body.replaceChildren(emptyRow(4, 'No usage in this range yet.')); return; }
  body.replaceChildren(...rows.map((r) => {
    const fill = el('div', { cls: 'share-fill' });
    fill.style.width = `${Math.max(0, Math.min(1, toNum(r.share) || 0)) * 100}%`;
    const key = r.key === null || r.key === undefined || r.key === '' ? '(none)' : String(r.key);
    const tr = el('tr', { test: 'usage-row' },
      el('td', { cls: 'key', title: key, test: 'usage-key' }, pathNode('', key)),
      el('td', { cls: 'num', text: credits(r.credits), test: 'usage-credits' }),
      el('td', { cls: 'num hide-sm', text: nf0.format(r.count || 0), test: 'usage-count' }),
      el('td', {}, el('div', { cls: 'share' }, el('div', { cls: 'share-bar' }, fill), el('span', { cls: 'share-pct', text: pct(r.share), test: 'usage-share' }))));
    return tr;
  }));
}

function renderHot(d) {
  const rows = Array.isArray(d.rows) ? d.rows : [];
  const body = $('hot-rows');
  if (!rows.length) { body.replaceChildren(emptyRow(3, 'No agent turns on files yet.')); return; }
  body.replaceChildren(...rows.map((r) => el('tr', { test: 'hot-row' },
    el('td', { cls: 'key' }, pathNode('chip', r.file || '(none)', 'hot-file')),
    el('td', { cls: 'num', text: nf0.format(r.turns || 0), test: 'hot-turns' }),
    el('td', { cls: 'num', text: credits(r.credits), test: 'hot-credits' }))));
}

// One row per loop; the snapshot to revert to is stacked under the file (not a column of its
// own) so that it stays visible on narrow cards without sideways scrolling.
function renderLoops(d) {
  const loops = Array.isArray(d.loops) ? d.loops : [];
  const body = $('loops-rows');
  if (!loops.length) { body.replaceChildren(emptyRow(4, 'No regression loops found. Good.')); return; }
  body.replaceChildren(...loops.map((l) => {
    const what = l.file || l.feature || '(unknown)';
    const revert = el('div', { cls: 'revert' }, el('span', { cls: 'muted', text: 'Revert to ' }),
      l.revert_to_snapshot ? el('span', { cls: 'chip', text: l.revert_to_snapshot, test: 'loop-snapshot' }) : el('span', { cls: 'muted', text: 'no snapshot' }));
    const first = el('td', { cls: 'key wrap' },
      el('div', { cls: 'loop-target', test: 'loop-target' }, pathNode('', what)),
      el('div', { cls: 'small muted', text: `${when(l.first_at)} → ${when(l.last_at)}` }),
      revert);
    return el('tr', { test: 'loop-row' }, first,
      el('td', { cls: 'num', text: nf0.format(l.turns || 0), test: 'loop-turns' }),
      el('td', { cls: 'num', text: credits(l.credits), test: 'loop-credits' }),
      el('td', { cls: 'num', text: credits(l.waste), test: 'loop-waste' }));
  }));
}

function renderCache(d) {
  setText('cache-rate', pct(d.hit_rate));
  setText('cache-saved', credits(d.saved));
  setText('cache-hits', nf0.format(d.hits || 0));
  setText('cache-misses', nf0.format(d.misses || 0));
  // The figures are of one pool (API.md: `pool`), as every panel's: said where it matters.
  setText('cache-pool', state.pool ? ` · ${state.pool} pool` : '');
  const rows = Array.isArray(d.by_call_site) ? d.by_call_site : [];
  const body = $('cache-rows');
  if (!rows.length) { body.replaceChildren(emptyRow(3, 'No cached call sites yet.')); return; }
  body.replaceChildren(...rows.map((r) => el('tr', {},
    el('td', { cls: 'key', text: r.call_site || '(none)', title: r.call_site || '' }),
    el('td', { cls: 'num', text: pct(r.hit_rate) }),
    el('td', { cls: 'num', text: credits(r.saved) }))));
}

// Newest first. The list shows state.alertsShown of them and says how many more there are,
// with a button to show them: it never stops silently.
function renderAlerts(d) {
  // The route lists them in firing order: reversed, then sorted by time (a stable sort), the
  // newest come first, also among alerts of the same instant.
  const alerts = Array.isArray(d.alerts) ? d.alerts.slice().reverse() : [];
  alerts.sort((a, b) => String(b.at).localeCompare(String(a.at)));
  const list = $('alerts-list');
  // The route lists the account's alerts of every cycle (API.md; the newest 1,000 are kept):
  // the list says so, and marks those fired before the current cycle.
  if (!alerts.length) {
    // The route lists one pool's alerts (API.md: `pool`, by default the plan's first).
    const where = state.pool ? `the ${state.pool} pool` : 'this account';
    list.replaceChildren(el('li', { cls: 'empty', text: `No alerts yet for ${where}.` }));
    return;
  }
  const a0 = state.lastAccount;
  const cycleStart = a0 && a0.cycle ? Date.parse(a0.cycle.start) : NaN;
  const shown = alerts.slice(0, state.alertsShown);
  const items = shown.map((a) => {
    const cls = a.rule === 'burn_spike' ? 'badge danger' : a.rule === 'threshold' ? 'badge warn' : 'badge';
    const earlier = Number.isFinite(cycleStart) && Date.parse(a.at) < cycleStart;
    return el('li', { test: 'alert' }, el('span', { cls, text: String(a.rule || 'alert').replace(/_/g, ' ') }),
      el('div', { cls: 'alert-main' }, el('div', { cls: 'alert-msg', text: a.message || '' }),
        el('div', { cls: 'alert-at', text: earlier ? `${when(a.at)} · an earlier cycle` : when(a.at), test: 'alert-at' })));
  });
  const rest = alerts.length - shown.length;
  if (rest > 0 || d.more) {
    const n = !d.more ? nf0.format(rest) : rest > 0 ? `more than ${nf0.format(rest)}` : 'more (not loaded)';
    const btn = el('button', { cls: 'btn ghost small', text: 'Show more', test: 'alerts-show-more' });
    btn.type = 'button';
    btn.addEventListener('click', () => {
      state.alertsShown += 100;
      renderAlerts(d);
    });
    items.push(el('li', { cls: 'more' }, el('span', { text: `and ${n} older ${rest === 1 && !d.more ? 'alert' : 'alerts'}`, test: 'alerts-more' }), rest > 0 ? btn : null));
  }
  list.replaceChildren(...items);
}

function renderForecast(d) {
  const adv = d.advice || {};
  const action = $('advice-action');
  action.textContent = ADVICE[adv.action] || adv.action || '–';
  action.className = `advice-action ${adv.action || ''}`;
  const plan = adv.plan ? state.plans.get(adv.plan) : null;
  setText('advice-plan', adv.plan && adv.action !== 'stay' ? `→ ${plan ? plan.name : adv.plan}` : plan ? `(${plan.name})` : '');
  setText('advice-reason', adv.reason || '');
  if (isNum(adv.price_delta_usd)) {
    const usdDelta = Number(adv.price_delta_usd);
    const sign = usdDelta > 0 ? '+' : usdDelta < 0 ? '−' : '';
    setText('advice-price', `${sign}${usd.format(Math.abs(usdDelta))} per cycle`);
  } else setText('advice-price', '–');
  setText('advice-hours', isNum(adv.engineering_hours) ? `${signed(adv.engineering_hours, nf1)} h` : '–');
  setText('fc-util', pct(d.utilization));
  setText('fc-need', isNum(d.need) ? `${credits(d.need)} credits` : '–');
  setText('fc-runs-out', d.runs_out_at ? when(d.runs_out_at) : 'not this cycle');
}

// The bars are the API's days; the trailing mean is today's (one figure, over the
// `window_days` days before today), drawn flat and labelled so; the spike line is the
// account's burn_spike factor times that mean (the `factor` of the answer).
function renderBurn(d) {
  state.lastBurn = d;
  const days = Array.isArray(d.days) ? d.days : [];
  setText('burn-today', credits(d.today));
  setText('burn-mean', credits(d.trailing_mean));
  setText('burn-mean-label', isNum(d.window_days) && d.window_days > 0 ? `Trailing mean (${nf0.format(d.window_days)} d)` : 'Trailing mean');
  setText('burn-ratio', isNum(d.ratio) ? `${nf1.format(Number(d.ratio))}×` : '–');
  setText('burn-exhaustion', d.projected_exhaustion ? day(d.projected_exhaustion) : 'not this cycle');
  $('spike-badge').hidden = !d.spike;
  // No burn yet: a note instead of an empty chart.
  const none = !days.some((x) => isNum(x.credits) && x.credits > 0);
  $('burn-empty').hidden = !none;
  $('burn-chart-box').hidden = none;
  if (none || !window.Chart) return;
  const factor = isNum(d.factor) && d.factor > 0 ? d.factor : SPIKE_FACTOR_DEFAULT;
  const labels = days.map((x) => day(`${String(x.date).slice(0, 10)}T00:00:00Z`));
  // The chart draws floats; its tooltips print the exact figures ($exact below).
  const values = days.map((x) => toNum(x.credits) || 0);
  const mean = toNum(d.trailing_mean);
  const meanLine = days.map(() => mean);
  const spikeLine = days.map(() => (mean === null ? null : mean * Number(factor)));
  const exact = { bars: days.map((x) => x.credits), mean: d.trailing_mean, spike: spikeMilli(d.trailing_mean, factor) };
  const colors = days.map((_, i) => (i === days.length - 1 && d.spike ? COLORS.barSpike : COLORS.bar));
  const meanLabel = mean === null ? 'Trailing mean today (not enough history)'
    : isNum(d.window_days) && d.window_days > 0 ? `Trailing mean today (${nf0.format(d.window_days)}-day)` : 'Trailing mean today';
  const spikeLabel = `Spike line (${nf.format(Number(factor))}× mean)`;
  if (!state.charts.burn) {
    state.charts.burn = new window.Chart($('burn-chart'), {
      data: {
        labels,
        datasets: [
          { type: 'bar', label: 'Credits per day', data: values, backgroundColor: colors, borderRadius: 4, order: 3, pointStyle: 'rectRounded' },
          { type: 'line', label: meanLabel, data: meanLine, borderColor: COLORS.mean, backgroundColor: COLORS.mean, borderWidth: 2, pointRadius: 0, pointHoverRadius: 0, order: 1, pointStyle: 'line' },
          { type: 'line', label: spikeLabel, data: spikeLine, borderColor: COLORS.spike, backgroundColor: COLORS.spike, borderDash: [6, 4], borderWidth: 1.5, pointRadius: 0, pointHoverRadius: 0, order: 2, pointStyle: 'line' },
        ],
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: { duration: 250 },
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
          y: { beginAtZero: true, grid: { color: '#eef1f6' }, ticks: { callback: (v) => nf.format(v) } },
        },
        plugins: {
          legend: { position: 'bottom', labels: { boxWidth: 14, boxHeight: 8, usePointStyle: true, padding: 14 } },
          tooltip: { callbacks: { label: (c) => ` ${c.dataset.label}: ${burnTip(c)}` } },
        },
      },
    });
  } else {
    const ch = state.charts.burn;
    const [bars, m, s] = ch.data.datasets;
    const sig = (a) => JSON.stringify(a);
    const same = sig(ch.data.labels) === sig(labels) && sig(bars.data) === sig(values) && sig(m.data) === sig(meanLine)
      && sig(s.data) === sig(spikeLine) && sig(bars.backgroundColor) === sig(colors) && m.label === meanLabel && s.label === spikeLabel;
    if (!same) {
      ch.data.labels = labels;
      bars.data = values;
      bars.backgroundColor = colors;
      m.data = meanLine;
      m.label = meanLabel;
      s.data = spikeLine;
      s.label = spikeLabel;
      ch.update();
    }
  }
  state.charts.burn.$exact = exact;
}

// The spike line's figure: trailing mean × factor in millicredits, half up (null if unknown).
function spikeMilli(mean, factor) {
  const m = money(mean), f = decimalParts(factor);
  if (m === null || !f) return null;
  const [n, div] = f;
  const p = m * n;
  return (p >= 0n ? p * 2n + div : p * 2n - div) / (2n * div);
}
// A burn chart tooltip's figure, exact: the day's credits, the mean, or the spike line.
function burnTip(c) {
  const ex = c.chart.$exact;
  if (!ex) return credits(c.raw);
  if (c.datasetIndex === 0) return credits(ex.bars[c.dataIndex]);
  if (c.datasetIndex === 1) return credits(ex.mean);
  return ex.spike === null ? credits(c.raw) : formatMilli(ex.spike);
}

// ---------- usage switch ----------
async function loadUsage() {
  const gen = state.gen, grp = state.groupBy;
  const r = await analytics('usage', withPool({ group_by: grp }));
  if (gen === state.gen && grp === state.groupBy) panel('usage', r, renderUsage);
}

// ---------- audit ----------
// The report is fetched with the key (a plain link cannot carry the bearer header) and shown
// from a Blob URL. A blob document inherits this page's CSP (style-src 'self'), which blocks
// the report's inline <style> and style="" attributes. So the viewer takes them out of the
// markup before making the blob, and applies them again through the CSSOM (a constructed
// stylesheet and element.style), which the CSP allows. "Download" saves the report as it came.
function detachStyles(html) {
  const css = [];
  let out = html.replace(/<style\b[^>]*>([\s\S]*?)<\/style\s*>/gi, (_, text) => { css.push(text); return ''; });
  out = out.replace(/<[a-zA-Z][^>]*>/g, (tag) => tag.replace(/(\s)style\s*=\s*(?:"([^"]*)"|'([^']*)')/gi,
    (_, sp, dq, sq) => `${sp}data-audit-style="${(dq !== undefined ? dq : sq).replace(/"/g, '&quot;')}"`));
  return { html: out, css: css.join('\n') };
}

// The viewer's own rules, before the report's: a table wider than the frame scrolls on its
// own (a phone's 375 px) instead of widening the whole page, and a chart shrinks to fit.
const AUDIT_VIEWER_CSS = 'table{display:block;max-width:100%;overflow-x:auto}svg{max-width:100%;height:auto}';

function restyleAudit(frame, css) {
  let doc;
  try { doc = frame.contentDocument; } catch { return; }
  if (!doc || !doc.defaultView || !state.auditViewUrl || doc.URL !== state.auditViewUrl) return;
  try {
    const sheet = new doc.defaultView.CSSStyleSheet();
    sheet.replaceSync(`${AUDIT_VIEWER_CSS}\n${css}`);
    doc.adoptedStyleSheets = [sheet];
  } catch { /* an unparsable sheet: show the report unstyled */ }
  for (const e of doc.querySelectorAll('[data-audit-style]')) e.style.cssText = e.getAttribute('data-audit-style');
}

function resetAudit() {
  for (const u of [state.auditUrl, state.auditViewUrl]) if (u) URL.revokeObjectURL(u);
  state.auditUrl = null;
  state.auditViewUrl = null;
  $('audit-frame').removeAttribute('src');
  $('audit-modal').hidden = true;
  $('audit-download').hidden = true;
  $('audit-download-2').hidden = true;
  $('audit-status').hidden = true;
}

async function openAudit() {
  const btn = $('audit-open');
  const status = $('audit-status');
  btn.disabled = true;
  btn.textContent = 'Preparing the report…';
  const gen = state.gen;
  const r = await api(acctPath(`/audit${withPool({ format: 'html' })}`), { raw: true });
  let html = null;
  if (r.ok) { try { html = await r.data.text(); } catch { html = null; } }
  btn.disabled = false;
  btn.textContent = 'Open the audit report';
  if (gen !== state.gen) return;
  if (!r.ok || html === null) {
    status.hidden = false;
    status.className = notRoute(r) ? 'na' : 'na err';
    status.textContent = notRoute(r) ? 'The audit report is not available on this server yet.'
      : `Could not load the audit (${r.status}): ${r.error ? r.error.message : 'the answer was cut off'}`;
    return;
  }
  status.hidden = true;
  for (const u of [state.auditUrl, state.auditViewUrl]) if (u) URL.revokeObjectURL(u);
  state.auditUrl = URL.createObjectURL(new Blob([html], { type: 'text/html' }));
  const view = detachStyles(html);
  state.auditViewUrl = URL.createObjectURL(new Blob([view.html], { type: 'text/html' }));
  for (const dl of [$('audit-download'), $('audit-download-2')]) {
    dl.href = state.auditUrl;
    dl.download = `audit-${state.account}.html`;
    dl.hidden = false;
  }
  const frame = $('audit-frame');
  frame.onload = () => restyleAudit(frame, view.css);
  frame.src = state.auditViewUrl;
  $('audit-modal').hidden = false;
}

// ---------- wiring ----------
function init() {
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = $('key-input').value.trim();
    const account = $('account-input').value.trim();
    if (!key) { showLogin('Paste an API key first.'); return; }
    const btn = $('login-submit');
    btn.disabled = true;
    $('login-error').hidden = true;
    try { await connect(key, account); } finally { btn.disabled = false; }
  });
  $('signout').addEventListener('click', () => signOut(''));
  $('account-picker').addEventListener('change', (ev) => switchAccount(ev.target.value));
  for (const b of document.querySelectorAll('#group-switch button')) {
    b.addEventListener('click', () => {
      if (state.groupBy === b.dataset.group) return;
      state.groupBy = b.dataset.group;
      for (const o of document.querySelectorAll('#group-switch button')) {
        o.classList.toggle('active', o === b);
        o.setAttribute('aria-selected', String(o === b));
      }
      setText('usage-key-head', GROUPS[state.groupBy]);
      loadUsage();
    });
  }
  $('audit-open').addEventListener('click', () => openAudit());
  $('audit-close').addEventListener('click', () => { $('audit-modal').hidden = true; });
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') $('audit-modal').hidden = true; });
  document.addEventListener('visibilitychange', () => { if (!document.hidden && state.key && state.account) startLoop(); });

  if (window.Chart) {
    window.Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    window.Chart.defaults.color = '#64708a';
  }
  const params = new URLSearchParams(location.search);
  const key = sessionStorage.getItem(KEY_STORE);
  const account = params.get('account') || sessionStorage.getItem(ACCOUNT_STORE) || '';
  $('account-input').value = account;
  if (key) {
    $('key-input').value = '';
    connect(key, account);
  } else showLogin('');
}

init();
