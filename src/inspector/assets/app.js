// Flotilla inspector: plain browser JavaScript, no build step, no CDN. Everything it shows
// comes from /v1 with the bearer token (asked once, kept in sessionStorage); the live feed is
// read with fetch() streaming so the token travels in a header, never in a URL.

(() => {
  const TOKEN_KEY = 'flotilla.inspector.token';
  const app = document.getElementById('app');
  const statusLine = document.getElementById('status');
  const liveBadge = document.getElementById('live');
  const crumb = document.getElementById('crumb');
  const loginForm = document.getElementById('login');
  const logoutButton = document.getElementById('logout');
  /** Test and measurement hooks (read by the browser test). */
  const probe = { latencies: [], fleetRenderMs: null, ready: false };
  window.__inspector = probe;

  // ------------------------------------------------------------------ API
  /** `sent`: the token the refused request carried (null when it had none). */
  class AuthError extends Error {
    constructor(status, sent) {
      super(`HTTP ${status}`);
      this.sent = sent;
    }
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const headers = () => (token() ? { authorization: `Bearer ${token()}` } : {});
  async function api(path) {
    const sent = token();
    const res = await fetch(path, { headers: headers(), cache: 'no-store' });
    if (res.status === 401 || res.status === 403) throw new AuthError(res.status, sent);
    const body = await res.json();
    if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
    return body;
  }
  function showLogin(message) {
    app.replaceChildren();
    stopFeed();
    loginForm.hidden = false;
    document.getElementById('login-error').textContent = message ?? '';
    document.getElementById('token').focus();
  }
  loginForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = document.getElementById('token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    loginForm.hidden = true;
    route();
  });
  logoutButton.addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    logoutButton.hidden = true;
    showLogin();
  });
  async function guarded(fn) {
    try {
      await fn();
    } catch (err) {
      if (err instanceof AuthError) {
        // Forget the token only if it is the one that was refused.
        if (err.sent && err.sent === token()) sessionStorage.removeItem(TOKEN_KEY);
        showLogin(err.sent ? 'That token was refused.' : '');
      } else {
        app.replaceChildren(el('p', { class: 'error' }, String(err.message ?? err)));
      }
    }
  }

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs = {}, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      n.append(c instanceof Node ? c : String(c));
    }
    return n;
  }
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const badge = (state) => el('span', { class: `badge s-${state}` }, state);
  function age(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${Math.floor(s)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    if (s < 86400) return `${Math.floor(s / 3600)}h`;
    return `${Math.floor(s / 86400)}d`;
  }
  const clock = (iso) => new Date(iso).toISOString().replace('T', ' ').slice(0, 23);
  function navigate(path) {
    history.pushState(null, '', path);
    route();
  }
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a[data-nav]');
    if (!a || e.metaKey || e.ctrlKey) return;
    e.preventDefault();
    navigate(a.getAttribute('href'));
  });
  window.addEventListener('popstate', () => route());

  // ------------------------------------------------------------------ live feed (SSE over fetch)
  let feed = null;
  function stopFeed() {
    if (feed) feed.abort();
    feed = null;
    liveBadge.className = 'live off';
    liveBadge.textContent = 'offline';
  }
  /**
   * Reads /v1/events/stream and calls onEvent(data) for each transition. Reconnects with
   * Last-Event-ID after a drop; a `resync` from the server calls onResync (reload, then go on).
   */
  function startFeed(query, onEvent, onResync) {
    stopFeed();
    const ctl = new AbortController();
    feed = ctl;
    let lastId = null;
    const connect = async () => {
      while (!ctl.signal.aborted) {
        try {
          const h = { ...headers(), accept: 'text/event-stream' };
          if (lastId !== null) h['last-event-id'] = lastId;
          const res = await fetch(`/v1/events/stream${query}`, { headers: h, signal: ctl.signal });
          if (res.status === 401 || res.status === 403)
            throw new AuthError(res.status, h.authorization ?? null);
          if (!res.ok || !res.body) throw new Error(`feed HTTP ${res.status}`);
          liveBadge.className = 'live on';
          liveBadge.textContent = 'live';
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value;
            for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              let id = null;
              let event = 'message';
              let data = '';
              for (const line of block.split('\n')) {
                if (line.startsWith('id:')) id = line.slice(3).trim();
                else if (line.startsWith('event:')) event = line.slice(6).trim();
                else if (line.startsWith('data:')) data += line.slice(5).trim();
              }
              if (event === 'ready' && lastId === null) lastId = String(JSON.parse(data).cursor);
              if (event === 'message' && data) {
                if (id !== null) lastId = id;
                onEvent(JSON.parse(data));
              }
              if (event === 'resync') {
                lastId = String(JSON.parse(data).cursor);
                await onResync?.();
              }
            }
          }
        } catch (err) {
          if (ctl.signal.aborted) return;
          if (err instanceof AuthError) {
            showLogin('The live feed refused the token.');
            return;
          }
        }
        if (ctl.signal.aborted) return;
        liveBadge.className = 'live off';
        liveBadge.textContent = 'reconnecting';
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    void connect();
  }

  // ------------------------------------------------------------------ fleet view
  function trouble(d) {
    if (d.state === 'ERROR') return 'error';
    if (d.route_states.includes('DEGRADED')) return 'degraded routes';
    const why = `${d.reason ?? ''} ${d.replica_reasons.join(' ')}`;
    if (/crash|backoff|recovery failed/i.test(why)) return 'crash loop';
    if (/capacity|insufficient|does not fit/i.test(why)) return 'waiting for capacity';
    if (d.state === 'RUNNING' && d.healthy_replicas < d.target_replicas) return 'under target';
    return null;
  }
  function fleetRowHtml(d) {
    const t = trouble(d);
    return (
      `<tr data-id="${esc(d.id)}" data-name="${esc(d.name)}" data-state="${esc(d.state)}"${t ? ' class="trouble"' : ''}>` +
      `<td><a href="/inspector/deployments/${encodeURIComponent(d.name)}" data-nav>${esc(d.name)}</a></td>` +
      `<td><span class="badge s-${esc(d.state)}">${esc(d.state)}</span></td>` +
      `<td class="ready">${d.healthy_replicas}/${d.target_replicas}</td>` +
      `<td class="reason">${esc([t, d.reason].filter(Boolean).join(': '))}</td>` +
      `<td title="${esc(d.created_at)}">${age(d.created_at)}</td></tr>`
    );
  }
  function fleetRow(d) {
    const body = document.createElement('tbody');
    body.innerHTML = fleetRowHtml(d);
    return body.firstElementChild;
  }
  async function fleetView() {
    crumb.textContent = 'fleet';
    const { items } = await api('/v1/inspector/fleet');
    probe.fetchedMs = Math.round(performance.now());
    const nameFilter = el('input', { type: 'search', placeholder: 'filter by name', id: 'filter' });
    const states = ['PENDING', 'PROVISIONING', 'RUNNING', 'ERROR', 'DESTROYING', 'TERMINATED'];
    const stateFilter = el(
      'select',
      { id: 'state-filter' },
      el('option', { value: '' }, 'any state'),
      el('option', { value: 'trouble' }, 'in trouble'),
      states.map((s) => el('option', { value: s }, s)),
    );
    const count = el('span', { class: 'count' });
    const tbody = document.createElement('tbody');
    // One parse for the whole list: 1,000 rows in a single innerHTML.
    tbody.innerHTML = items.map(fleetRowHtml).join('');
    const rows = new Map([...tbody.children].map((tr) => [tr.dataset.id, tr]));
    const table = el(
      'table',
      { class: 'fleet' },
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          ['name', 'state', 'healthy/target', 'reason', 'age'].map((h) => el('th', {}, h)),
        ),
      ),
      tbody,
    );
    const applyFilter = () => {
      const q = nameFilter.value.trim().toLowerCase();
      const s = stateFilter.value;
      let shown = 0;
      for (const tr of rows.values()) {
        const ok =
          (!q || tr.dataset.name.toLowerCase().includes(q)) &&
          (!s || (s === 'trouble' ? tr.classList.contains('trouble') : tr.dataset.state === s));
        tr.hidden = !ok;
        if (ok) shown += 1;
      }
      count.textContent = `${shown} of ${rows.size} deployments`;
    };
    nameFilter.addEventListener('input', applyFilter);
    stateFilter.addEventListener('change', applyFilter);
    app.replaceChildren(el('div', { class: 'toolbar' }, nameFilter, stateFilter, count), table);
    applyFilter();
    // First render measured once the browser has laid the table out and painted.
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    probe.fleetRenderMs = Math.round(performance.now());
    statusLine.textContent = `${items.length} deployments rendered in ${probe.fleetRenderMs} ms from navigation start`;

    // Live: only the row of the deployment that moved is fetched and replaced.
    const pending = new Map();
    startFeed(
      '',
      (e) => {
        if (e.kind === 'deployment' || e.kind === 'replica' || e.kind === 'route') {
          if (pending.has(e.deployment_id)) return;
          pending.set(
            e.deployment_id,
            setTimeout(async () => {
              pending.delete(e.deployment_id);
              try {
                const [d] = (await api(`/v1/inspector/fleet?id=${e.deployment_id}`)).items;
                const tr = fleetRow(d);
                tr.classList.add('flash');
                const old = rows.get(d.id);
                if (old) old.replaceWith(tr);
                else tbody.append(tr);
                rows.set(d.id, tr);
                applyFilter();
                probe.latencies.push(Date.now() - Date.parse(e.at));
              } catch {}
            }, 50),
          );
        }
      },
      () => fleetView(),
    );
  }

  // ------------------------------------------------------------------ statecharts (elkjs)
  let chartsPromise = null;
  let elkPromise = null;
  /** elkjs (≈1.5 MB) is loaded only by the deployment view, so the fleet view stays light. */
  const loadElk = () =>
    (elkPromise ??= new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = '/inspector/assets/elk.bundled.js';
      s.onload = () => resolve(window.ELK);
      s.onerror = () => reject(new Error('could not load elkjs'));
      document.head.append(s);
    }));
  const layouts = new Map();
  const charts = () =>
    (chartsPromise ??= fetch('/inspector/assets/machines.json').then((r) => r.json()));
  function edgeText(e) {
    const ev = e.event.replace(/^xstate\.(done|error)\.actor\./, '$1: ');
    return e.guard ? `${ev} [${e.guard}]` : ev;
  }
  /** Lays a machine's chart out once (elkjs, layered, compound states as nested graphs). */
  async function layout(name) {
    if (layouts.has(name)) return layouts.get(name);
    const chart = (await charts())[name];
    const node = (s) => {
      const base = { id: s.id, labels: [{ text: s.key, width: s.key.length * 7 + 8, height: 14 }] };
      if (s.states.length === 0)
        return { ...base, width: Math.max(70, s.key.length * 7.5 + 20), height: 30 };
      return {
        ...base,
        children: s.states.map(node),
        layoutOptions: { 'elk.padding': '[top=24,left=10,bottom=10,right=10]' },
      };
    };
    const graph = {
      id: 'root',
      layoutOptions: {
        'elk.algorithm': 'layered',
        'elk.direction': 'DOWN',
        'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
        'elk.layered.spacing.nodeNodeBetweenLayers': '36',
        'elk.spacing.nodeNode': '24',
        'elk.spacing.edgeLabel': '2',
        'elk.edgeLabels.inline': 'false',
        'elk.nodeLabels.placement': 'INSIDE V_TOP H_CENTER',
      },
      children: chart.states.map(node),
      edges: chart.edges.map((e, i) => ({
        id: `e${i}`,
        sources: [e.from],
        targets: [e.to],
        labels: [{ text: edgeText(e), width: edgeText(e).length * 5 + 4, height: 11 }],
      })),
    };
    const ELK = await loadElk();
    const elk = new ELK();
    const done = await elk.layout(graph);
    const result = { chart, svg: renderSvg(chart, done) };
    layouts.set(name, result);
    return result;
  }
  function renderSvg(chart, g) {
    const parts = [];
    const abs = new Map();
    const final = new Set();
    const compound = new Set();
    const walk = (states) => {
      for (const s of states) {
        if (s.type === 'final') final.add(s.id);
        if (s.states.length) compound.add(s.id);
        walk(s.states);
      }
    };
    walk(chart.states);
    const nodes = (children, ox, oy) => {
      for (const n of children ?? []) {
        const x = ox + n.x;
        const y = oy + n.y;
        abs.set(n.id, { x, y });
        const key = n.id.split('.').pop();
        const top = n.id.split('.')[0];
        const cls = [
          'state',
          `s-${key}`,
          compound.has(n.id) ? 'compound' : '',
          final.has(n.id) ? 'final' : '',
        ].join(' ');
        const ty = compound.has(n.id) ? y + 15 : y + n.height / 2 + 4;
        parts.push(
          `<g class="${cls}" data-state="${esc(n.id)}" data-top="${esc(top)}"><rect x="${x}" y="${y}" width="${n.width}" height="${n.height}" rx="5"/>` +
            `<text x="${x + n.width / 2}" y="${ty}" text-anchor="middle">${esc(key)}</text>`,
        );
        if (n.children) nodes(n.children, x, y);
        parts.push('</g>');
      }
    };
    nodes(g.children, 0, 0);
    // With INCLUDE_CHILDREN, edge coordinates are relative to the edge's container.
    const offset = (e) =>
      (e.container && e.container !== 'root' ? abs.get(e.container) : null) ?? { x: 0, y: 0 };
    for (const [i, e] of (g.edges ?? []).entries()) {
      const src = chart.edges[i];
      const o = offset(e);
      let d = '';
      for (const s of e.sections ?? []) {
        d += `M${s.startPoint.x + o.x},${s.startPoint.y + o.y}`;
        for (const b of s.bendPoints ?? []) d += ` L${b.x + o.x},${b.y + o.y}`;
        d += ` L${s.endPoint.x + o.x},${s.endPoint.y + o.y}`;
      }
      const l = e.labels?.[0];
      parts.push(
        `<g class="edge" data-from="${esc(src.from)}" data-to="${esc(src.to)}" data-event="${esc(src.event)}" data-guard="${esc(src.guard ?? '')}"><path d="${d}"/>` +
          (l ? `<text x="${l.x + o.x}" y="${l.y + o.y + 9}">${esc(l.text)}</text>` : '') +
          '</g>',
      );
    }
    const defs =
      '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#4a5666"/></marker>' +
      '<marker id="arrow-last" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#d29922"/></marker></defs>';
    return `<svg xmlns="http://www.w3.org/2000/svg" data-machine="${esc(chart.machine)}" width="${Math.ceil(g.width)}" height="${Math.ceil(g.height)}" viewBox="0 0 ${Math.ceil(g.width)} ${Math.ceil(g.height)}">${defs}${parts.join('')}</svg>`;
  }
  /** Highlights `phase` (e.g. UNHEALTHY.backoff) and marks the edges of the last transition. */
  function paint(svgHost, phase, last) {
    const top = phase.split('.')[0];
    for (const g of svgHost.querySelectorAll('.state')) {
      const id = g.dataset.state;
      g.classList.toggle('current', id === top || id === phase);
    }
    for (const g of svgHost.querySelectorAll('.edge')) {
      const f = g.dataset.from.split('.')[0];
      const t = g.dataset.to.split('.')[0];
      const on =
        !!last && last.from !== null && last.from !== last.to && f === last.from && t === last.to;
      g.classList.toggle('last', on);
    }
  }

  // ------------------------------------------------------------------ deployment view
  const DEADLINE_WORDS = {
    'STARTING.delayed': 'start in',
    'STARTING.launching': 'startup timeout in',
    'UNHEALTHY.backoff': 'restart in',
    'UNHEALTHY.observing': 'back to backoff in',
    'TERMINATING.graceful': 'force stop in',
    // A route draining, a deployment waiting for its first HEALTHY replica or for its retry.
    TERMINATING: 'drain ends in',
    PROVISIONING: 'provisioning timeout in',
    PENDING: 'retry in',
  };
  function deadlineText(r) {
    if (!r.deadline_at) return '';
    const s = Math.max(0, Math.round((Date.parse(r.deadline_at) - Date.now()) / 1000));
    return `${DEADLINE_WORDS[r.phase] ?? 'deadline in'} ${s} s`;
  }

  async function deploymentView(idOrName) {
    crumb.textContent = '';
    const view = await api(`/v1/deployments/${encodeURIComponent(idOrName)}`);
    crumb.append(el('a', { href: '/inspector', 'data-nav': true }, 'fleet'), ' / ', view.name);
    const model = { view, events: [], selected: `deployment:${view.id}`, past: null };
    // Timeline: the whole history, paged from PostgreSQL.
    let after = 0;
    for (let i = 0; i < 50; i++) {
      const page = await api(`/v1/deployments/${view.id}/events?after=${after}&limit=1000`);
      model.events.push(...page.items);
      if (page.next === null) break;
      after = page.next;
    }
    const [dl, rl, tl] = await Promise.all([
      layout('deployment'),
      layout('replica'),
      layout('route'),
    ]);
    const svgs = { deployment: dl.svg, replica: rl.svg, route: tl.svg };

    const banner = el('div', { class: 'banner', id: 'past-banner', hidden: true });
    const treeHost = el('div', { class: 'tree' });
    const chartsHost = el('div', { class: 'charts' });
    const detailsHost = el('div', { class: 'details' });
    const range = el('input', {
      type: 'range',
      min: 0,
      max: 1000,
      value: 1000,
      id: 'scrubber',
      'aria-label': 'time',
    });
    const out = el('output', { id: 'scrub-time' }, 'now (live)');
    const liveButton = el('button', { id: 'back-to-live' }, 'live');
    const eventsList = el('ul', { class: 'events', id: 'timeline' });
    app.replaceChildren(
      banner,
      el(
        'div',
        { class: 'layout' },
        el('div', { class: 'panel' }, el('h3', {}, 'actors'), treeHost),
        el('div', {}, chartsHost),
        el('div', { class: 'panel' }, el('h3', {}, 'details'), detailsHost),
      ),
      el(
        'div',
        { class: 'panel timeline' },
        el('h3', {}, 'timeline'),
        el('div', { class: 'scrub' }, range, out, liveButton),
        eventsList,
      ),
    );

    /** Current actors: live from the view, or as rebuilt for a past instant. */
    function actors() {
      if (model.past) {
        const byParent = model.past.actors;
        const dep = byParent.find((a) => a.kind === 'deployment');
        return {
          deployment: {
            id: `deployment:${view.id}`,
            state: dep?.state ?? 'NONE',
            phase: dep?.state ?? 'NONE',
          },
          replicas: byParent
            .filter((a) => a.kind === 'replica')
            .map((a) => ({
              id: a.actor_id,
              raw: a.actor_id.slice(8),
              state: a.state,
              phase: a.state,
              reason: a.last.reason,
            })),
          routes: byParent
            .filter((a) => a.kind === 'route')
            .map((a) => ({
              id: a.actor_id,
              raw: a.actor_id.slice(6),
              state: a.state,
              phase: a.state,
              parent: a.parent,
            })),
        };
      }
      const v = model.view;
      return {
        deployment: {
          id: `deployment:${v.id}`,
          state: v.state,
          phase: v.state,
          reason: v.reason,
          deadline_at: v.deadline_at ?? null,
        },
        replicas: v.replicas.map((r) => ({ ...r, raw: r.id, id: `replica:${r.id}` })),
        routes: v.routes.map((r) => ({
          ...r,
          phase: r.state,
          raw: r.id,
          id: `route:${r.id}`,
          parent: `replica:${r.replica_id}`,
        })),
      };
    }
    const lastOf = (actorId) => {
      const until = model.past ? Date.parse(model.past.at) : Infinity;
      for (let i = model.events.length - 1; i >= 0; i--) {
        const e = model.events[i];
        if (e.actor_id === actorId && Date.parse(e.at) <= until && e.from_state !== e.to_state) {
          return { from: e.from_state, to: e.to_state, at: e.at };
        }
      }
      return null;
    };

    const chartCards = new Map();
    function chartCard(kind, actor) {
      let card = chartCards.get(actor.id);
      if (!card) {
        card = el('div', {
          class: 'chart',
          'data-kind': kind,
          'data-actor': actor.id,
          onclick: () => select(actor.id),
        });
        card.innerHTML = `<h4></h4>${svgs[kind]}`;
        chartCards.set(actor.id, card);
      }
      const h = card.querySelector('h4');
      h.replaceChildren(
        el('span', {}, kind),
        badge(actor.state),
        el('span', { class: 'id' }, actor.raw ?? ''),
      );
      card.dataset.state = actor.state;
      card.dataset.phase = actor.phase ?? actor.state;
      card.classList.toggle('selected', model.selected === actor.id);
      paint(card, actor.phase ?? actor.state, lastOf(actor.id));
      return card;
    }
    function treeItem(actor, kind, children) {
      const row = el(
        'div',
        {
          class: `actor${model.selected === actor.id ? ' selected' : ''}`,
          'data-actor': actor.id,
          'data-state': actor.state,
          onclick: () => select(actor.id),
        },
        badge(actor.state),
        el('span', { class: 'kind muted' }, kind),
        el('span', { class: 'id' }, kind === 'deployment' ? model.view.name : actor.raw),
        el(
          'span',
          { class: 'deadline', 'data-deadline': actor.deadline_at ?? '' },
          model.past ? '' : deadlineText(actor),
        ),
      );
      return el('li', {}, row, children?.length ? el('ul', {}, children) : null);
    }
    function render() {
      const a = actors();
      const routesOf = (rid) => a.routes.filter((r) => r.parent === rid);
      const orphans = a.routes.filter((r) => !a.replicas.some((x) => x.id === r.parent));
      treeHost.replaceChildren(
        el(
          'ul',
          {},
          treeItem(a.deployment, 'deployment', [
            ...a.replicas.map((r) =>
              treeItem(
                r,
                'replica',
                routesOf(r.id).map((t) => treeItem(t, 'route')),
              ),
            ),
            ...orphans.map((t) => treeItem(t, 'route')),
          ]),
        ),
      );
      const cards = [chartCard('deployment', a.deployment)];
      for (const r of a.replicas) {
        cards.push(chartCard('replica', r));
        for (const t of routesOf(r.id)) cards.push(chartCard('route', t));
      }
      for (const t of orphans) cards.push(chartCard('route', t));
      chartsHost.replaceChildren(...cards);
      renderDetails();
      banner.hidden = !model.past;
      if (model.past) {
        banner.replaceChildren(
          el('strong', {}, 'time travel'),
          `showing ${clock(model.past.at)}: every actor as it was then`,
          el('button', { onclick: () => goLive() }, 'back to live'),
        );
        liveBadge.className = 'live past';
        liveBadge.textContent = 'past';
      } else if (feed) {
        liveBadge.className = 'live on';
        liveBadge.textContent = 'live';
      }
    }
    function renderDetails() {
      const id = model.selected;
      const a = actors();
      const all = [a.deployment, ...a.replicas, ...a.routes];
      const actor = all.find((x) => x.id === id) ?? a.deployment;
      let context;
      if (actor.id.startsWith('deployment:')) {
        const { replicas, routes, ...rest } = model.view;
        context = rest;
      } else {
        const { raw, parent, ...rest } = actor;
        context = rest;
      }
      const evs = model.events
        .filter((e) => e.actor_id === actor.id)
        .slice(-15)
        .reverse();
      const route =
        a.routes.find((r) => r.parent === actor.id) ??
        (actor.id.startsWith('route:') ? actor : null);
      const parts = [
        el('div', {}, badge(actor.state), ' ', el('code', {}, actor.id)),
        actor.reason ? el('p', {}, 'reason: ', actor.reason) : null,
        !model.past && actor.deadline_at
          ? el('p', { class: 'deadline' }, deadlineText(actor))
          : null,
        route?.last_health
          ? el(
              'p',
              {},
              `last health: ${route.last_health.class} (${route.last_health.reason}) at ${clock(route.last_health.at)}`,
            )
          : null,
        el('h3', {}, 'context (secrets redacted)'),
        el('pre', {}, JSON.stringify(context, null, 2)),
        el('h3', {}, 'last events'),
        el(
          'ul',
          { class: 'events' },
          evs.map((e) =>
            el(
              'li',
              {},
              el('time', {}, clock(e.at)),
              ` ${e.from_state ?? '∅'} → ${e.to_state} `,
              el(
                'span',
                { class: 'muted' },
                e.event !== 'transition' ? e.event : '',
                e.reason ? ` ${e.reason}` : '',
              ),
            ),
          ),
        ),
      ];
      detailsHost.replaceChildren(...parts.filter(Boolean));
    }
    function select(id) {
      model.selected = id;
      render();
    }
    function renderTimeline() {
      const items = model.events.slice(-300).reverse();
      eventsList.replaceChildren(
        ...items.map((e) =>
          el(
            'li',
            { 'data-id': e.id },
            el('time', {}, clock(e.at)),
            ' ',
            el('code', {}, e.actor_id.replace(view.id, '…')),
            ` ${e.from_state ?? '∅'} → `,
            badge(e.to_state),
            ' ',
            el(
              'span',
              { class: 'muted' },
              e.event !== 'transition' ? e.event : '',
              e.reason ? ` ${e.reason}` : '',
            ),
          ),
        ),
      );
    }
    const span = () => {
      const first = model.events.length ? Date.parse(model.events[0].at) : Date.now();
      return { first, last: Date.now() };
    };
    let scrubTimer = null;
    range.addEventListener('input', () => {
      const { first, last } = span();
      const t = first + ((last - first) * Number(range.value)) / 1000;
      out.textContent =
        Number(range.value) >= 1000 ? 'now (live)' : clock(new Date(t).toISOString());
      clearTimeout(scrubTimer);
      scrubTimer = setTimeout(
        () => (Number(range.value) >= 1000 ? goLive() : travel(new Date(t).toISOString())),
        60,
      );
    });
    liveButton.addEventListener('click', () => goLive());
    async function travel(iso) {
      await guarded(async () => {
        model.past = await api(`/v1/deployments/${view.id}/state?at=${encodeURIComponent(iso)}`);
        render();
      });
    }
    async function goLive() {
      model.past = null;
      range.value = '1000';
      out.textContent = 'now (live)';
      await refresh();
    }
    probe.travel = travel;
    let refreshing = null;
    async function refresh() {
      if (refreshing) return refreshing;
      refreshing = (async () => {
        try {
          model.view = await api(`/v1/deployments/${view.id}`);
          if (!model.past) render();
        } finally {
          refreshing = null;
        }
      })();
      return refreshing;
    }

    render();
    renderTimeline();
    const ticker = setInterval(() => {
      if (!document.body.contains(treeHost)) return clearInterval(ticker);
      if (model.past) return;
      for (const d of treeHost.querySelectorAll('.deadline[data-deadline]')) {
        const at = d.dataset.deadline;
        if (!at) continue;
        const li = d.closest('[data-actor]');
        const all = actors();
        const r = [all.deployment, ...all.replicas, ...all.routes].find(
          (x) => x.id === li.dataset.actor,
        );
        if (r) d.textContent = deadlineText(r);
      }
    }, 1000);
    let timer = null;
    startFeed(
      `?deployment=${encodeURIComponent(view.id)}`,
      (e) => {
        model.events.push({
          id: e.id,
          actor_id: e.actor,
          kind: e.kind,
          deployment_id: e.deployment_id,
          from_state: e.from,
          to_state: e.to,
          event: e.event,
          reason: e.cause,
          at: e.at,
        });
        renderTimeline();
        if (model.past) return;
        clearTimeout(timer);
        timer = setTimeout(async () => {
          await refresh();
          probe.latencies.push(Date.now() - Date.parse(e.at));
        }, 20);
      },
      async () => {
        model.events = [];
        let a = 0;
        for (let i = 0; i < 50; i++) {
          const page = await api(`/v1/deployments/${view.id}/events?after=${a}&limit=1000`);
          model.events.push(...page.items);
          if (page.next === null) break;
          a = page.next;
        }
        renderTimeline();
        await refresh();
      },
    );
  }

  // ------------------------------------------------------------------ routing
  async function route() {
    loginForm.hidden = true;
    logoutButton.hidden = !token();
    probe.ready = false;
    stopFeed();
    const m = /^\/inspector\/deployments\/([^/]+)\/?$/.exec(location.pathname);
    await guarded(async () => {
      if (m) await deploymentView(decodeURIComponent(m[1]));
      else await fleetView();
      probe.ready = true;
    });
  }
  void route();
})();
