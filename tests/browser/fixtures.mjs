// Answers in the shapes of API.md ("Events and analytics (read)"), served with page.route in
// place of analytics routes that the server under test does not have yet, so that the
// panels' rendering is tested either way. Figures are made up but consistent.
const days = [];
const series = [212.4, 187.9, 240.1, 199.5, 175.2, 0, 0, 230.8, 251.3, 208.6, 226.4, 612.75];
series.forEach((credits, i) => days.push({ date: `2026-03-${String(2 + i).padStart(2, '0')}`, credits }));
const mean = 176.52;

// Many alerts, for the "and N more" line: GET /v1/accounts/{id}/alerts answered as the route
// does (API.md conventions: `limit` default 100, at most 1,000; `after` is the id of the last
// alert of the previous page; alerts in the order they fired; `next` null at the end).
const ALERTS_MANY = 1025;
function alertMessage(i) { return `alert ${i} of ${ALERTS_MANY}: 50% of the credits pool is used`; }
function alertsAnswer(params) {
  const all = [];
  for (let i = 1; i <= ALERTS_MANY; i++) {
    all.push({ alert_id: `al_${i}`, rule: i % 2 ? 'threshold' : 'burn_spike',
      at: new Date(Date.parse('2026-03-02T00:00:00Z') + i * 60e3).toISOString().replace('.000Z', 'Z'),
      message: alertMessage(i), details: { pool: 'credits' } });
  }
  const limit = Math.min(1000, Number(params.get('limit') || 100));
  const after = params.get('after');
  const from = after ? all.findIndex((a) => a.alert_id === after) + 1 : 0;
  const page = all.slice(from, from + limit);
  return { alerts: page, next: from + limit < all.length ? page[page.length - 1].alert_id : null };
}

export const fixtures = {
  'usage:kind': { from: '2026-03-02T08:00:00Z', to: '2026-04-02T08:00:00Z', total: 2931.75, rows: [
    { key: 'agent_prompt', credits: 2085.5, count: 244, share: 0.7113 },
    { key: 'integration.invoke_llm', credits: 512.25, count: 88, share: 0.1747 },
    { key: 'discuss_turn', credits: 198, count: 91, share: 0.0675 },
    { key: 'integration.generate_image', credits: 121, count: 12, share: 0.0413 },
    { key: 'integration.send_email', credits: 15, count: 15, share: 0.0051 },
  ] },
  'usage:user': { from: '2026-03-02T08:00:00Z', to: '2026-04-02T08:00:00Z', total: 2931.75, rows: [
    { key: 'dana', credits: 1402.5, count: 190, share: 0.4784 },
    { key: 'eli', credits: 801.25, count: 120, share: 0.2733 },
    { key: 'fatima', credits: 512, count: 90, share: 0.1746 },
    { key: 'gus', credits: 216, count: 50, share: 0.0737 },
  ] },
  'usage:file': { from: '2026-03-02T08:00:00Z', to: '2026-04-02T08:00:00Z', total: 2931.75, rows: [
    { key: 'src/pages/Checkout.jsx', credits: 902.5, count: 98, share: 0.3078 },
    { key: 'src/components/Cart.jsx', credits: 488, count: 51, share: 0.1665 },
    { key: 'src/pages/Dashboard.jsx', credits: 371, count: 44, share: 0.1265 },
    { key: 'src/api/orders.js', credits: 204, count: 31, share: 0.0696 },
    { key: null, credits: 966.25, count: 226, share: 0.3296 },
  ] },
  'usage:feature': { from: '2026-03-02T08:00:00Z', to: '2026-04-02T08:00:00Z', total: 2931.75, rows: [
    { key: 'checkout', credits: 1502.5, count: 180, share: 0.5125 },
    { key: 'dashboard', credits: 801.25, count: 120, share: 0.2733 },
    { key: 'orders', credits: 628, count: 150, share: 0.2142 },
  ] },
  'usage:model': { from: '2026-03-02T08:00:00Z', to: '2026-04-02T08:00:00Z', total: 2931.75, rows: [
    { key: 'default', credits: 2283.5, count: 335, share: 0.7789 },
    { key: 'gpt-4o', credits: 402, count: 26, share: 0.1371 },
    { key: 'gpt-4o-mini', credits: 110.25, count: 62, share: 0.0376 },
    { key: null, credits: 136, count: 27, share: 0.0464 },
  ] },
  'hot-files': { rows: [
    { file: 'src/pages/Checkout.jsx', turns: 98, credits: 902.5 },
    { file: 'src/components/Cart.jsx', turns: 51, credits: 488 },
    { file: 'src/pages/Dashboard.jsx', turns: 44, credits: 371 },
    { file: 'src/api/orders.js', turns: 31, credits: 204 },
    { file: 'src/lib/auth.js', turns: 20, credits: 120.25 },
  ] },
  // `factor` and `window_days` are the account's burn_spike rule; `now` is the server's clock.
  burn: { pool: 'credits', days, today: 612.75, trailing_mean: mean, window_days: 11, ratio: 3.471, factor: 2, spike: true,
    projected_exhaustion: '2026-03-25T12:00:00Z', now: '2026-03-13T12:00:00Z' },
  forecast: { pool: 'credits', plan: 'builder', used: 2931.75, allowance: 5000, extra: 0, available: 2068.25, trailing_mean: mean,
    need: 6019.33, utilization: 0.5864, runs_out_at: '2026-03-25T12:00:00Z', cycle_end: '2026-04-02T08:00:00Z',
    advice: { action: 'upgrade_now', plan: 'pro', price_delta_usd: 50, engineering_hours: 0.5, sized_correctly: false,
      reason: 'At the trailing mean the credits run out on Mar 25, 8 days before the cycle ends; Pro covers the need for 50 USD more, half an engineering hour.' } },
  'regression-loops': { loops: [
    { file: 'src/pages/Checkout.jsx', feature: 'checkout', turns: 7, credits: 71.5, waste: 61.25, first_at: '2026-03-09T09:05:00Z', last_at: '2026-03-09T15:40:00Z', revert_to_snapshot: 'snap-0193' },
    { file: null, feature: 'orders', turns: 4, credits: 38, waste: 29, first_at: '2026-03-11T10:00:00Z', last_at: '2026-03-11T11:20:00Z', revert_to_snapshot: null },
  ] },
  'cache-stats': { hits: 42, misses: 58, hit_rate: 0.42, saved: 96.5, by_call_site: [
    { call_site: 'ProductPage.summary', hits: 38, misses: 12, hit_rate: 0.76, saved: 88.5 },
    { call_site: 'Checkout.suggest', hits: 4, misses: 46, hit_rate: 0.08, saved: 8 },
  ] },
  alerts: { alerts: [
    { alert_id: 'al_1', rule: 'threshold', at: '2026-03-10T14:02:00Z', message: '50% of the credits pool is used (2,500 of 5,000).', details: { percent: 50 } },
    { alert_id: 'al_2', rule: 'burn_spike', at: '2026-03-13T11:30:00Z', message: "Today's burn (612.75) is 3.5× the 14-day mean (176.52).", details: { factor: 2 } },
    { alert_id: 'al_3', rule: 'projected_exhaustion', at: '2026-03-13T11:30:00Z', message: 'At this rate the credits run out on Mar 25, before the cycle ends on Apr 2.', details: {} },
  ], next: null },
  alertMessage,
  alertsAnswer,
  // Inline <style> and style="" as a self-contained report would have them: the dashboard's
  // viewer must apply them through the CSSOM (its CSP blocks them in the markup).
  audit: '<!doctype html><html><head><meta charset="utf-8"><title>Audit</title>'
    + '<style>body{font-family:sans-serif;margin:2rem}h1{color:rgb(180, 0, 0)}.bar{fill:#4f46e5}</style></head>'
    + '<body><h1>Credit audit: acme</h1><p class="lead" style="font-weight: 700">Fixture report.</p>'
    + '<svg width="200" height="20" role="img"><rect class="bar" width="120" height="20"/></svg></body></html>',
};
