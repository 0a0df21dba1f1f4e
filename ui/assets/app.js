// Cairn explorer. Plain JavaScript, no libraries. Records are hostile input:
// every piece of text from the log goes into the page through textContent
// (the el() helper), never parsed as markup; the CSP forbids inline script anyway.
'use strict';

(function () {
  // The read token lives in this closure only: no cookie, no storage.
  let token = '';
  let status = null;        // the last /ui/api/status answer
  let policyEdited = false; // the verify page's policy is the auditor's own
  let refreshTimer = 0;
  let wasm = null;          // a promise of the verifier, loaded on first use

  // el builds an element: attrs are attributes (never event handlers),
  // children strings (as text) or nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }
  const svgNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  const main = () => document.getElementById('main');
  function show(...nodes) {
    const m = main();
    m.replaceChildren(...nodes.flat(2).filter((n) => n !== null && n !== undefined));
  }

  class HTTPError extends Error {
    constructor(status, text) { super(text); this.status = status; }
  }

  async function api(path) {
    const headers = {};
    if (token) headers['Authorization'] = 'Bearer ' + token;
    const resp = await fetch(path, { headers, cache: 'no-store' });
    if (!resp.ok) {
      const text = (await resp.text()).trim();
      if (resp.status === 401 || resp.status === 403) askToken(text);
      throw new HTTPError(resp.status, text || resp.statusText);
    }
    return resp.json();
  }

  function askToken(why) {
    const f = document.getElementById('token-form');
    f.hidden = false;
    const hint = f.querySelector('.why');
    if (hint) hint.remove();
    if (why) f.append(el('p', { class: 'hint why' }, 'The log answered: ' + why));
  }

  function fmtInt(n) { return Number(n).toLocaleString('en-US'); }
  function fmtAge(s) {
    s = Math.max(0, s);
    if (s < 90) return s.toFixed(s < 10 ? 1 : 0) + ' s';
    if (s < 5400) return (s / 60).toFixed(1) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  function fmtTime(ms) {
    if (!ms) return '—';
    return new Date(Number(ms)).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }
  function b64ToBytes(b64) {
    const s = atob(b64 || '');
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function hex(bytes) { return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(''); }
  function errorBox(err) {
    return el('p', { class: 'error', role: 'alert' }, err instanceof Error ? err.message : String(err));
  }
  function badge(kind, text) { return el('span', { class: 'badge ' + kind }, text); }
  function stateBadge(state) {
    const kind = { plain: 'ok', decrypted: 'ok', erased: 'warn', pruned: 'muted', sealed: 'muted', tampered: 'bad', malformed: 'bad' }[state] || 'muted';
    return badge(kind, state);
  }

  // ---- status ----

  async function loadStatus() {
    status = await api('api/status');
    document.getElementById('origin').textContent = status.origin;
    document.getElementById('nav-search').hidden = !status.index_url;
    document.getElementById('nav-history').hidden = !status.index_url;
    if (status.read_access === 'authenticated' && !token) askToken('');
    return status;
  }

  async function pageStatus() {
    let s;
    try { s = await loadStatus(); } catch (e) { show(el('h1', {}, 'Status'), errorBox(e)); return; }
    const cards = el('div', { class: 'cards' },
      card('Tree size', fmtInt(s.tree_size), 'tree-size'),
      card('Checkpoint age', fmtAge(s.checkpoint_age_seconds), 'checkpoint-age'),
      card('Witness quorum', s.quorum),
      card('Minimum index', s.retention ? fmtInt(s.minimum_index) : 'retention off'));
    const wt = cosignerTable(s.witnesses, s.tree_size, 'witnesses');
    const mt = cosignerTable(s.mirrors, s.tree_size, 'mirrors');
    show(
      el('h1', {}, 'Status'),
      cards,
      el('h2', {}, 'Witnesses'),
      s.witnesses.length ? wt : el('p', { class: 'hint' }, 'No witness policy: checkpoints are signed by the log alone.'),
      el('h2', {}, 'Mirrors'),
      s.mirrors.length ? mt : el('p', { class: 'hint' }, 'No mirrors are pushed to.'),
      el('h2', {}, 'Last hours (from this frontend\u2019s own metrics, one point a minute)'),
      el('div', { class: 'charts' },
        chart('Records per minute', s.history, (p) => p.records, 'bar', 'chart-records'),
        chart('Checkpoint age (s, worst in the minute)', s.history, (p) => p.checkpoint_age_seconds, 'line', 'chart-age')),
      el('h2', {}, 'Latest checkpoint'),
      el('pre', { id: 'checkpoint' }, s.checkpoint));
    scheduleRefresh(pageStatus, 5000);
  }

  function card(k, v, id) {
    return el('div', { class: 'card' }, el('div', { class: 'k' }, k), el('div', { class: 'v', id }, v));
  }

  function cosignerTable(rows, size, id) {
    const body = rows.map((c) => el('tr', {},
      el('td', { 'data-label': 'Name' }, c.name, c.url && c.url !== c.name ? el('div', { class: 'hint mono' }, c.url) : null),
      el('td', { class: 'num', 'data-label': 'Last cosigned size' }, c.known ? fmtInt(c.size) : '—'),
      el('td', { class: 'num', 'data-label': 'Behind (entries)' }, c.known ? fmtInt(c.behind) : '—'),
      el('td', { 'data-label': 'State' }, c.cosigned_latest ? badge('ok', 'cosigned latest') : c.known ? (c.behind > 0 ? badge('warn', 'behind') : badge('ok', 'current')) : badge('muted', 'not heard from'),
        c.cosigned_at ? el('div', { class: 'hint' }, c.cosigned_at) : null)));
    return el('div', { class: 'table-wrap' }, el('table', { id, class: 'stack' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Name'), el('th', { class: 'num' }, 'Last cosigned size'), el('th', { class: 'num' }, 'Behind (entries)'), el('th', {}, 'State'))),
      el('tbody', {}, body)));
  }

  // chart draws an inline SVG: bars or a line over the minutes.
  function chart(title, points, value, kind, id) {
    const W = 480, H = 160, L = 44, B = 22, T = 8, R = 8;
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, id });
    const vals = points.map(value);
    const maxV = Math.max(1, ...vals);
    // At least an hour wide, the newest minute at the right edge.
    const n = Math.max(points.length, 60);
    const x = (i) => L + (n - points.length + i + 0.5) * (W - L - R) / n;
    const y = (v) => H - B - (v / maxV) * (H - B - T);
    s.append(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
    s.append(svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    s.append(svg('text', { x: L - 4, y: T + 10, 'text-anchor': 'end' }, maxV.toFixed(maxV < 10 ? 1 : 0)));
    s.append(svg('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, '0'));
    if (points.length) {
      const t0 = new Date((points[points.length - 1].start - (n - 1) * 60) * 1000).toISOString().slice(11, 16);
      const t1 = new Date(points[points.length - 1].start * 1000).toISOString().slice(11, 16);
      s.append(svg('text', { x: L, y: H - 6 }, t0 + ' UTC'));
      s.append(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, t1 + ' UTC'));
    } else {
      s.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no data yet'));
    }
    if (kind === 'bar') {
      const bw = Math.max(1, (W - L - R) / n - 1);
      points.forEach((p, i) => {
        const r = svg('rect', { class: 'bar', x: x(i) - bw / 2, y: y(vals[i]), width: bw, height: Math.max(0, H - B - y(vals[i])) });
        r.append(svg('title', {}, `${new Date(p.start * 1000).toISOString().slice(11, 16)} UTC: ${vals[i]}`));
        s.append(r);
      });
    } else if (points.length) {
      s.append(svg('polyline', { class: 'line', points: points.map((p, i) => `${x(i)},${y(vals[i])}`).join(' ') }));
      points.forEach((p, i) => {
        const c = svg('circle', { class: 'dot', cx: x(i), cy: y(vals[i]), r: 2.5 });
        c.append(svg('title', {}, `${new Date(p.start * 1000).toISOString().slice(11, 16)} UTC: ${fmtAge(vals[i])}`));
        s.append(c);
      });
    }
    return el('figure', { class: 'chart' }, el('figcaption', {}, title), s);
  }

  function scheduleRefresh(fn, ms) {
    clearTimeout(refreshTimer);
    const hash = location.hash;
    refreshTimer = setTimeout(() => {
      if (location.hash !== hash) return;
      // Re-rendering would take the keyboard focus away: wait until it leaves the page body.
      if (document.hidden || main().contains(document.activeElement) && document.activeElement !== main()) { scheduleRefresh(fn, ms); return; }
      fn();
    }, ms);
  }

  // ---- records ----

  async function pageRecords(params) {
    const before = params.get('before');
    const q = before !== null ? '?before=' + encodeURIComponent(before) : '';
    let list;
    try { list = await api('api/records' + q); } catch (e) { show(el('h1', {}, 'Records'), errorBox(e)); return; }
    const rows = list.records.map((r) => el('tr', {},
      el('td', { class: 'num', 'data-label': 'Index' }, el('a', { href: '#/record/' + r.index }, String(r.index))),
      el('td', { 'data-label': 'Timestamp' }, fmtTime(r.timestamp_unix_millis)),
      el('td', { 'data-label': 'Principal' }, r.submitter || '—'),
      el('td', { 'data-label': 'Content type' }, r.content_type || '—'),
      el('td', { class: 'num', 'data-label': 'Bytes' }, r.state === 'plain' || r.state === 'decrypted' ? fmtInt(r.payload_bytes) : '—'),
      el('td', { 'data-label': 'State' }, stateBadge(r.state))));
    const last = list.records.length ? list.records[list.records.length - 1].index : 0;
    const first = list.records.length ? list.records[0].index + 1 : list.tree_size;
    const older = el('button', { type: 'button', class: 'secondary', id: 'older', disabled: last === 0 }, '\u2190 Older');
    older.addEventListener('click', () => { location.hash = '#/records?before=' + last; });
    const newer = el('button', { type: 'button', class: 'secondary', id: 'newer', disabled: first >= list.tree_size }, 'Newer \u2192');
    newer.addEventListener('click', () => { location.hash = '#/records?before=' + Math.min(list.tree_size, first + 20); });
    const latest = el('button', { type: 'button', class: 'secondary', disabled: first >= list.tree_size }, 'Latest');
    latest.addEventListener('click', () => { location.hash = '#/records'; });
    const go = el('form', { class: 'row', id: 'goto' },
      el('div', {}, el('label', { for: 'goto-index' }, 'Open record by index'), el('input', { id: 'goto-index', type: 'number', min: 0, inputmode: 'numeric' })),
      el('button', { type: 'submit' }, 'Open'));
    go.addEventListener('submit', (ev) => { ev.preventDefault(); const v = go.querySelector('input').value; if (v !== '') location.hash = '#/record/' + Number(v); });
    show(el('h1', {}, 'Records'),
      el('p', { class: 'hint' }, `Tree size ${fmtInt(list.tree_size)}` + (list.minimum_index ? `; records below ${fmtInt(list.minimum_index)} are pruned (retention).` : '.')),
      el('div', { class: 'pager' }, newer, older, latest),
      el('div', { class: 'table-wrap' }, el('table', { id: 'records', class: 'stack' },
        el('thead', {}, el('tr', {}, el('th', { class: 'num' }, 'Index'), el('th', {}, 'Timestamp'), el('th', {}, 'Principal'), el('th', {}, 'Content type'), el('th', { class: 'num' }, 'Bytes'), el('th', {}, 'State'))),
        el('tbody', {}, rows))),
      go);
  }

  // body renders a payload: JSON pretty-printed when it parses, text when it
  // is printable UTF-8, a hex dump otherwise. Always as text.
  function body(bytes, contentType) {
    let text = null;
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); } catch (_) { text = null; }
    if (text !== null) {
      const jsonish = /json/i.test(contentType || '') || /^\s*[\[{]/.test(text);
      if (jsonish) {
        try { return ['JSON', el('pre', { id: 'payload' }, JSON.stringify(JSON.parse(text), null, 2))]; } catch (_) { /* not JSON after all */ }
      }
      // eslint-disable-next-line no-control-regex
      if (!/[\u0000-\u0008\u000e-\u001f\u007f]/.test(text)) return ['text', el('pre', { id: 'payload' }, text)];
    }
    const lines = [];
    for (let i = 0; i < bytes.length; i += 16) {
      const chunk = bytes.slice(i, i + 16);
      const ascii = Array.from(chunk, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
      lines.push(i.toString(16).padStart(8, '0') + '  ' + hex(chunk).replace(/(..)/g, '$1 ').padEnd(48) + ' ' + ascii);
    }
    return ['hex', el('pre', { id: 'payload' }, lines.join('\n'))];
  }

  function download(name, data, type) {
    const url = URL.createObjectURL(new Blob([data], { type }));
    const a = el('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  async function pageRecord(index) {
    let r;
    try {
      r = await api('api/record/' + encodeURIComponent(index));
    } catch (e) {
      const pruned = e.status === 410;
      show(el('h1', {}, 'Record ', String(index), ' ', pruned ? stateBadge('pruned') : null), errorBox(e),
        el('p', {}, el('a', { href: '#/records' }, '\u2190 Records')));
      return;
    }
    const payload = b64ToBytes(r.payload);
    const leaf = b64ToBytes(r.leaf);
    const readable = r.state === 'plain' || r.state === 'decrypted';
    const [kind, rendered] = readable ? body(payload, r.content_type) : [null, null];
    const envelope = el('dl', { class: 'kv', id: 'envelope' },
      el('dt', {}, 'State'), el('dd', {}, stateBadge(r.state), r.detail ? ' ' + r.detail : ''),
      el('dt', {}, 'Timestamp'), el('dd', {}, readable ? fmtTime(r.timestamp_unix_millis) + ' (the submitter\u2019s clock)' : '—'),
      el('dt', {}, 'Principal'), el('dd', { id: 'principal' }, r.submitter || '—'),
      el('dt', {}, 'Content type'), el('dd', { id: 'content-type' }, r.content_type || '—'),
      el('dt', {}, 'Idempotency key'), el('dd', {}, r.idempotency_key || '—'),
      r.erased_at_unix_millis ? [el('dt', {}, 'Erased at'), el('dd', {}, fmtTime(r.erased_at_unix_millis))] : [],
      r.subject_hashes ? [el('dt', {}, 'Subject hashes'), el('dd', { class: 'mono' }, r.subject_hashes.join(' '))] : [],
      el('dt', {}, 'Payload'), el('dd', {}, readable ? `${fmtInt(payload.length)} bytes, shown as ${kind}` : 'not readable (' + r.state + ')'));
    const proof = el('dl', { class: 'kv', id: 'proof' },
      el('dt', {}, 'Leaf hash'), el('dd', { class: 'mono', id: 'leaf-hash' }, r.leaf_hash),
      el('dt', {}, 'Tree size'), el('dd', {}, fmtInt(r.tree_size)),
      el('dt', {}, 'Inclusion proof'), el('dd', { class: 'mono' }, el('ol', { start: 0 }, (r.proof || []).map((h) => el('li', {}, hex(b64ToBytes(h)))))));
    const dlReceipt = el('button', { type: 'button', class: 'secondary' }, 'Download receipt (.tlog-proof)');
    dlReceipt.addEventListener('click', () => download(`record-${r.index}.tlog-proof`, r.receipt, 'text/plain'));
    const dlLeaf = el('button', { type: 'button', class: 'secondary' }, 'Download leaf');
    dlLeaf.addEventListener('click', () => download(`record-${r.index}.leaf`, leaf, 'application/octet-stream'));
    const verify = el('button', { type: 'button', id: 'verify-this' }, 'Verify in this browser');
    verify.addEventListener('click', () => { pending = { receipt: r.receipt, leaf, index: r.index }; location.hash = '#/verify'; });
    show(el('h1', {}, 'Record ', String(r.index)),
      el('p', {}, el('a', { href: '#/records?before=' + (r.index + 1) }, '\u2190 Records')),
      el('h2', {}, 'Envelope'), envelope,
      readable ? [el('h2', {}, 'Body'), rendered] : [],
      el('h2', {}, 'Inclusion'), proof,
      el('div', { class: 'pager' }, verify, dlReceipt, dlLeaf),
      el('h2', {}, 'Receipt'), el('pre', { id: 'receipt' }, r.receipt));
  }

  // ---- verify ----

  let pending = null; // a record handed over by its page: {receipt, leaf, index}

  function loadVerifier() {
    if (wasm) return wasm;
    wasm = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = 'wasm_exec.js';
      s.onload = async () => {
        try {
          const go = new window.Go();
          const res = await WebAssembly.instantiateStreaming(fetch('verify.wasm'), go.importObject);
          go.run(res.instance);
          resolve(window.cairnVerifyReceipt);
        } catch (e) { wasm = null; reject(e); }
      };
      s.onerror = () => { wasm = null; reject(new Error('could not load wasm_exec.js')); };
      document.head.append(s);
    });
    return wasm;
  }

  function dropZone(textarea, onBytes) {
    textarea.addEventListener('dragover', (ev) => { ev.preventDefault(); textarea.classList.add('dragover'); });
    textarea.addEventListener('dragleave', () => textarea.classList.remove('dragover'));
    textarea.addEventListener('drop', async (ev) => {
      ev.preventDefault();
      textarea.classList.remove('dragover');
      const f = ev.dataTransfer.files[0];
      if (f) onBytes(new Uint8Array(await f.arrayBuffer()), f.name);
    });
  }

  async function pageVerify() {
    if (!status) { try { await loadStatus(); } catch (e) { /* shown below */ } }
    const policy = el('textarea', { id: 'policy', rows: 7, spellcheck: 'false' });
    policy.value = status ? status.policy : '';
    const policySource = el('p', { class: 'hint', id: 'policy-source' });
    const setSource = () => {
      policySource.textContent = policyEdited
        ? 'You edited this policy: the keys below are trusted because you pasted them.'
        : 'Prefilled from this log (GET /ui/api/status): the log vouches for its own keys and names its witnesses. For an independent check, paste the policy you got out of band (e.g. data/policy.txt).';
    };
    policy.addEventListener('input', () => { policyEdited = true; setSource(); });
    setSource();
    const receipt = el('textarea', { id: 'receipt-input', class: 'drop', rows: 8, spellcheck: 'false', placeholder: 'c2sp.org/tlog-proof@v1 …  (paste, or drop a .tlog-proof file here)' });
    dropZone(receipt, (b) => { receipt.value = new TextDecoder().decode(b); });
    const receiptFile = el('input', { type: 'file', id: 'receipt-file', accept: '.tlog-proof,text/plain', 'aria-label': 'Receipt file' });
    receiptFile.addEventListener('change', async () => { const f = receiptFile.files[0]; if (f) receipt.value = await f.text(); });
    let leaf = null;
    const leafInfo = el('p', { class: 'hint', id: 'leaf-info' }, 'No record chosen yet.');
    const setLeaf = (b, from) => { leaf = b; leafInfo.textContent = `Record: ${fmtInt(b.length)} bytes (${from}), leaf hash computed in the verifier.`; };
    const leafFile = el('input', { type: 'file', id: 'leaf-file', 'aria-label': 'Record (leaf) file' });
    leafFile.addEventListener('change', async () => { const f = leafFile.files[0]; if (f) setLeaf(new Uint8Array(await f.arrayBuffer()), f.name); });
    const pick = el('input', { type: 'number', id: 'pick-index', min: 0, inputmode: 'numeric', 'aria-label': 'Record index' });
    const pickBtn = el('button', { type: 'button', class: 'secondary', id: 'pick' }, 'Fetch record from the log');
    pickBtn.addEventListener('click', async () => {
      if (pick.value === '') return;
      try {
        const r = await api('api/record/' + Number(pick.value));
        setLeaf(b64ToBytes(r.leaf), `record ${r.index} fetched from this log`);
        if (!receipt.value.trim()) receipt.value = r.receipt;
      } catch (e) { leafInfo.textContent = 'Could not fetch: ' + e.message; }
    });
    const result = el('div', { id: 'result', 'aria-live': 'polite' });
    const run = el('button', { type: 'submit', id: 'verify' }, 'Verify');
    const form = el('form', { id: 'verify-form' },
      el('label', { for: 'policy' }, 'Trusted policy (tlog-policy)'), policy, policySource,
      el('label', { for: 'receipt-input' }, 'Receipt'), receipt, receiptFile,
      el('label', { for: 'leaf-file' }, 'Record (the exact leaf bytes, as cairn submit --record-out writes them)'),
      leafFile,
      el('div', { class: 'row' }, el('div', {}, el('label', { for: 'pick-index' }, 'or pick a record by index'), pick), pickBtn),
      leafInfo,
      el('div', { class: 'pager' }, run),
      result);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!leaf) { result.replaceChildren(errorBox('Choose the record: a leaf file, or a record index to fetch.')); return; }
      run.disabled = true;
      result.replaceChildren(el('p', { class: 'hint' }, 'Loading the verifier (WebAssembly)…'));
      try {
        const verifyFn = await loadVerifier();
        const res = JSON.parse(verifyFn(policy.value, receipt.value, leaf));
        result.replaceChildren(renderResult(res));
      } catch (e) {
        result.replaceChildren(errorBox('The verifier failed to run: ' + e.message));
      } finally { run.disabled = false; }
    });
    if (pending) {
      receipt.value = pending.receipt;
      setLeaf(pending.leaf, `record ${pending.index} from its page`);
      pending = null;
    }
    show(el('h1', {}, 'Verify a receipt'),
      el('p', { class: 'hint' }, 'Checks, in this browser, that the checkpoint is signed by a trusted log key, cosigned by the witness quorum, and that the record is at the receipt\u2019s index in that tree. The code is Cairn\u2019s own Go verifier compiled to WebAssembly, the same as cairn verify receipt.'),
      form);
  }

  function renderResult(res) {
    const trusted = el('ul', { class: 'keys', id: 'trusted-keys' }, (res.trusted || []).map((k) => el('li', {}, `${k.role} ${k.name}: `, el('span', { class: 'mono' }, k.vkey))));
    const why = policyEdited ? 'the policy you pasted' : 'the policy this log serves (the log vouching for itself)';
    if (!res.ok) {
      const what = { policy: 'The trusted policy does not parse', receipt: 'The receipt or the record does not verify', checkpoint: 'The checkpoint fails the trusted policy', call: 'The verifier was called wrongly' }[res.stage] || 'Verification failed';
      return el('div', { class: 'result bad', id: 'verdict', 'data-ok': 'false' },
        el('h2', {}, '\u2717 Not verified: ' + what),
        el('p', { id: 'failure' }, res.error),
        res.trusted ? [el('p', {}, `Keys trusted, from ${why}:`), trusted] : []);
    }
    const rec = res.record;
    return el('div', { class: 'result ok', id: 'verdict', 'data-ok': 'true' },
      el('h2', {}, `\u2713 Verified: record ${res.index} is in ${res.origin}`),
      el('dl', { class: 'kv' },
        el('dt', {}, 'Tree size'), el('dd', {}, fmtInt(res.tree_size)),
        el('dt', {}, 'Root hash'), el('dd', { class: 'mono' }, res.root),
        el('dt', {}, 'Signed by log key'), el('dd', { class: 'mono' }, res.log_key),
        el('dt', {}, 'Quorum'), el('dd', {}, res.quorum),
        el('dt', {}, 'Cosigned by'), el('dd', {}, (res.cosigned || []).length ? res.cosigned.map((c) => `${c.name} at ${c.time}`).join('; ') : 'no witness (quorum none)'),
        el('dt', {}, 'Inclusion proof'), el('dd', {}, `${res.proof_hashes} hashes lead from the record to the signed root`),
        rec ? [el('dt', {}, 'Record'), el('dd', {}, `${rec.submitter}, ${rec.content_type || 'no content type'}, ${fmtTime(rec.timestamp_unix_millis)}`)] : []),
      el('p', {}, `Keys trusted, from ${why}:`), trusted);
  }

  // ---- search and history (the index's API, docs/search.md) ----

  // indexFetch asks the index; the token, if any, goes along (the index
  // takes the log's access file).
  async function indexFetch(path, params) {
    const u = new URL(path, status.index_url.replace(/\/?$/, '/'));
    for (const [k, v] of params) u.searchParams.append(k, v);
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    let resp;
    try {
      resp = await fetch(u, { headers, cache: 'no-store' });
    } catch (e) {
      // The browser hides why (CORS refusals look like network errors).
      throw new Error(`could not reach the index at ${u.origin}: it is down, or it does not let this page's origin ${location.origin} query it (cairn index serve --cors-origin ${location.origin}, or serve it on this origin)`);
    }
    const text = await resp.text();
    if (!resp.ok) {
      if (resp.status === 401 || resp.status === 403) askToken(text.trim());
      throw new HTTPError(resp.status, 'the index answered ' + resp.status + ': ' + text.trim());
    }
    return text;
  }

  // checkHit verifies one answer line of the index as cairn search does,
  // in the WebAssembly verifier (format/search.CheckHit): the checkpoint
  // against the trusted policy, the inclusion proof, every claim (principal,
  // timestamp, content type, subjects, fields, state) recomputed from the
  // proven leaf, and the query. The hit shown is the leaf's own description.
  function checkHit(line, fieldsJSON, query) {
    const res = JSON.parse(window.cairnVerifyHit(status.policy, line, fieldsJSON, query));
    if (!res.ok) return { ok: false, why: res.error };
    const readable = res.hit.state === 'plain' || res.hit.state === 'decrypted';
    return { ok: true, why: 'in the log; its claims and the query match the proven record', hit: res.hit, payload: readable ? b64ToBytes(res.payload_base64 || '') : null };
  }

  // flatten maps every scalar (and empty container) of a JSON value to its
  // path, in the --field syntax: .name, ["any key"], [N]. A Map, so a
  // hostile key such as __proto__ is just a key.
  function flatten(doc) {
    const out = new Map();
    // goJSON writes a value as Go's json.Marshal does (cairn history's
    // text), which escapes <, >, & and the JavaScript line separators.
    const goJSON = (v) => JSON.stringify(v).replace(/[<>&\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
    const member = (k) => (/^[A-Za-z0-9_-]+$/.test(k) ? '.' + k : '[' + goJSON(k) + ']');
    const walk = (path, v) => {
      if (Array.isArray(v)) {
        if (!v.length) out.set(path, '[]');
        v.forEach((e, i) => walk(path + '[' + i + ']', e));
      } else if (v !== null && typeof v === 'object') {
        const keys = Object.keys(v);
        if (!keys.length) out.set(path, '{}');
        for (const k of keys) walk(path + member(k), v[k]);
      } else {
        out.set(path || '.', goJSON(v));
      }
    };
    walk('', doc);
    return out;
  }

  // parseJSON decodes a payload as UTF-8 JSON: {map} or {text} when it is not.
  function parseJSON(bytes) {
    let text;
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); } catch (e) { return { text: new TextDecoder().decode(bytes) }; }
    try { return { map: flatten(JSON.parse(text)) }; } catch (e) { return { text }; }
  }

  // diffJSON is cairn history's diff between consecutive versions:
  // "+ PATH: V" added, "- PATH: V" removed, "~ PATH: OLD → NEW" changed;
  // the first version lists everything as added.
  function diffJSON(prev, cur) {
    if (!cur) return ['(record not readable here: sealed)'];
    if (!cur.map) return ['(not JSON) ' + cur.text];
    const a = (prev && prev.map) || new Map();
    const b = cur.map;
    const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
    const out = [];
    for (const k of keys) {
      if (a.has(k) && !b.has(k)) out.push('- ' + k + ': ' + a.get(k));
      else if (!a.has(k) && b.has(k)) out.push('+ ' + k + ': ' + b.get(k));
      else if (a.get(k) !== b.get(k)) out.push('~ ' + k + ': ' + a.get(k) + ' \u2192 ' + b.get(k));
    }
    return out.length ? out : ['(no change)'];
  }

  // versionsView lists a history's verified versions in log order, each
  // with its diff from the previous verified one; every line is text.
  function versionsView(hits, checks) {
    let prev = null;
    const items = hits.map((claimed, i) => {
      const c = checks[i];
      const h = c.ok ? c.hit : claimed;
      const head = el('h3', {}, el('a', { href: '#/record/' + Number(h.index) }, '#' + Number(h.index)), ' ', fmtTime(h.timestamp_unix_millis), ' ', h.principal || '—', ' ',
        h.state !== 'plain' ? stateBadge(h.state) : null);
      if (!c.ok) return el('li', { 'data-verified': 'false' }, head, badge('bad', 'NOT verified'), el('span', { class: 'hint' }, ' left out of the diff: ' + c.why));
      const cur = c.payload ? parseJSON(c.payload) : null;
      const lines = diffJSON(prev, cur);
      if (cur) prev = cur;
      const kind = (l) => ({ '+': 'add', '-': 'del', '~': 'chg' }[l[0]] || 'note');
      return el('li', { 'data-verified': 'true' }, head,
        el('pre', { class: 'diff' }, lines.map((l) => el('span', { class: kind(l) }, l + '\n'))));
    });
    return el('section', { id: 'versions', 'aria-label': 'Versions' },
      el('h2', {}, 'Versions and their changes'),
      el('p', { class: 'hint' }, 'Each verified version with what changed from the previous one (+ added, \u2212 removed, ~ changed), as cairn history prints it.'),
      el('ol', { class: 'versions' }, items));
  }

  async function pageSearch(params, mode) {
    if (!status) { try { await loadStatus(); } catch (e) { show(errorBox(e)); return; } }
    const title = mode === 'history' ? 'History' : 'Search';
    if (!status.index_url) { show(el('h1', {}, title), el('p', {}, 'This log names no search index (cairn log serve --index-url).')); return; }
    let fields = {};
    try { fields = JSON.parse(await indexFetch('fields', [])).fields || {}; } catch (e) { show(el('h1', {}, title), errorBox(e)); return; }
    const input = (name, label, type) => el('div', {}, el('label', { for: 'q-' + name }, label), el('input', { id: 'q-' + name, name, type: type || 'text', value: params.get(name) || '' }));
    const fieldNames = Object.keys(fields).sort();
    const current = fieldNames.find((f) => params.has(f)) || fieldNames[0] || '';
    const fieldSel = el('select', { id: 'q-field', 'aria-label': 'Indexed field' }, fieldNames.map((f) => el('option', { value: f, selected: f === current }, `${f} (${fields[f]})`)));
    const fieldVal = el('input', { id: 'q-value', type: 'text', 'aria-label': 'Field value', value: current ? params.get(current) || '' : '' });
    const form = el('form', { id: 'search-form' },
      el('div', { class: 'row' }, el('div', {}, el('label', { for: 'q-field' }, 'Field'), fieldSel), el('div', {}, el('label', { for: 'q-value' }, 'equals'), fieldVal)),
      mode === 'history' ? [] : el('div', { class: 'row' }, input('principal', 'Principal'), input('content_type', 'Content type'), input('since', 'Since (RFC 3339)'), input('until', 'Until (RFC 3339)')),
      el('div', { class: 'pager' }, el('button', { type: 'submit' }, mode === 'history' ? 'Show history' : 'Search')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      if (fieldSel.value && fieldVal.value) q.set(fieldSel.value, fieldVal.value);
      for (const name of ['principal', 'content_type', 'since', 'until']) {
        const i = form.querySelector('#q-' + name);
        if (i && i.value) q.set(name, i.value);
      }
      q.set('go', '1');
      location.hash = '#/' + mode + '?' + q.toString();
    });
    const out = el('div', { id: 'search-results', 'aria-live': 'polite' });
    show(el('h1', {}, title),
      el('p', { class: 'hint' }, `Answers come from the index at ${status.index_url}. The index is not trusted: every hit is verified here as cairn search verifies it, with the WebAssembly verifier: its checkpoint against the policy, its inclusion proof, every claim (principal, timestamp, content type, subjects, fields, state) against its own leaf, and the query. It could still leave records out (cairn audit --index checks that).`),
      form, out);
    if (!params.get('go')) return;
    const q = [...params].filter(([k]) => k !== 'go');
    out.replaceChildren(el('p', { class: 'hint' }, 'Searching…'));
    try {
      const lines = (await indexFetch(mode, q)).split('\n').filter((l) => l.trim());
      const hits = [];
      const raw = [];
      let next = '';
      for (const l of lines) {
        const o = JSON.parse(l);
        if (o.next_page) next = o.next_page; else { hits.push(o); raw.push(l); }
      }
      if (hits.length) await loadVerifier();
      const fieldsJSON = JSON.stringify(fields);
      const query = new URLSearchParams(q).toString();
      let last = -1;
      const checks = hits.map((h, i) => {
        if (!(Number(h.index) > last)) return { ok: false, why: `hit ${h.index} is out of log order (after ${last})` };
        last = Number(h.index);
        return checkHit(raw[i], fieldsJSON, query);
      });
      const rows = hits.map((claimed, i) => {
        const c = checks[i];
        const h = c.ok ? c.hit : claimed; // a verified row shows what the leaf says
        return el('tr', { 'data-verified': String(c.ok) },
          el('td', { class: 'num' }, el('a', { href: '#/record/' + Number(h.index) }, String(Number(h.index)))),
          el('td', {}, fmtTime(h.timestamp_unix_millis)),
          el('td', {}, h.principal || '—'),
          el('td', {}, h.content_type || '—'),
          el('td', { class: 'mono' }, Object.entries(h.fields || {}).map(([k, v]) => `${k}=${v}`).join(' ')),
          el('td', {}, stateBadge(h.state)),
          el('td', {}, badge(c.ok ? 'ok' : 'bad', c.ok ? 'verified' : 'NOT verified'), el('div', { class: 'hint' }, c.why)));
      });
      const more = [];
      if (next) {
        const p = new URLSearchParams(params);
        p.set('page', next);
        more.push(el('p', {}, el('a', { href: '#/' + mode + '?' + p.toString(), id: 'next-page' }, 'Next page \u2192')));
      }
      out.replaceChildren(el('p', {}, `${hits.length} hits`),
        el('div', { class: 'table-wrap' }, el('table', { id: 'hits' },
          el('thead', {}, el('tr', {}, el('th', { class: 'num' }, 'Index'), el('th', {}, 'Timestamp'), el('th', {}, 'Principal'), el('th', {}, 'Content type'), el('th', {}, 'Fields'), el('th', {}, 'State'), el('th', {}, 'Checked'))),
          el('tbody', {}, rows))), ...more, ...(mode === 'history' ? [versionsView(hits, checks)] : []));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  }

  // ---- routing ----

  async function route() {
    clearTimeout(refreshTimer);
    const [path, query] = (location.hash.slice(1) || '/status').split('?');
    const params = new URLSearchParams(query || '');
    const parts = path.split('/').filter(Boolean);
    const page = parts[0] || 'status';
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.page === page || (page === 'record' && a.dataset.page === 'records')) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    switch (page) {
      case 'records': await pageRecords(params); break;
      case 'record': await pageRecord(parts[1]); break;
      case 'verify': await pageVerify(); break;
      case 'search': await pageSearch(params, 'search'); break;
      case 'history': await pageSearch(params, 'history'); break;
      default: await pageStatus();
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    const f = document.getElementById('token-form');
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = document.getElementById('token-input');
      token = input.value.trim();
      input.value = '';
      f.hidden = true;
      route();
    });
    window.addEventListener('hashchange', () => { route().then(() => main().focus({ preventScroll: true })); });
    route();
  });
})();
