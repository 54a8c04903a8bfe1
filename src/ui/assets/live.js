// kasgate status page: live updates over server-sent events. The page works without this
// script; with it, rows appear and change without reloading. HTML fragments come from the
// gateway's own templates (escaped there), never from text typed into the page.
'use strict';

(() => {
  const main = document.getElementById('main');
  const url = main && main.dataset.liveUrl;
  refreshTimesEvery(15_000);
  if (!url || !('EventSource' in window)) return;

  const indicator = document.getElementById('live-indicator');
  const indicatorText = indicator && indicator.querySelector('.live-text');
  const announcer = document.getElementById('announcer');
  const pageSize = 50;

  function setIndicator(state, words) {
    if (!indicator) return;
    indicator.hidden = false;
    indicator.classList.toggle('is-live', state === 'live');
    indicator.classList.toggle('is-down', state === 'down');
    indicatorText.textContent = words;
  }

  function announce(text) {
    if (!announcer || !text) return;
    announcer.textContent = '';
    setTimeout(() => (announcer.textContent = text), 50);
  }

  function fragment(html, context) {
    const template = document.createElement('template');
    template.innerHTML = html;
    return context === 'row' ? template.content.querySelector('tr') : template.content.firstElementChild;
  }

  const byData = (name, value) => document.querySelector(`[${name}="${CSS.escape(value)}"]`);

  function addEventRow(data) {
    const rows = document.getElementById('events-rows');
    if (!rows || byData('data-event-id', data.id)) return;
    const row = fragment(data.html, 'row');
    if (!row) return;
    row.classList.add('is-new');
    const empty = rows.querySelector('tr.empty');
    if (empty) empty.remove();
    // Newest first, whatever order the frames come in.
    const id = BigInt(data.id);
    const after = [...rows.querySelectorAll('tr[data-event-id]')].find((r) => BigInt(r.dataset.eventId) < id);
    rows.insertBefore(row, after || null);
    const all = rows.querySelectorAll('tr[data-event-id]');
    for (let i = pageSize; i < all.length; i++) all[i].remove();
    refreshTimes(row);
    if (data.announce) announce(data.announce);
  }

  function replaceAgentRow(data) {
    const row = document.querySelector(`#agents-table tr[data-agent-id="${CSS.escape(data.id)}"]`);
    const fresh = row && fragment(data.html, 'row');
    if (!fresh) return;
    const wasConnected = row.classList.contains('is-connected');
    row.replaceWith(fresh);
    refreshTimes(fresh);
    const count = document.getElementById('connected-count');
    if (count) count.textContent = String(document.querySelectorAll('#agents-table tr.is-connected').length);
    if (wasConnected !== fresh.classList.contains('is-connected')) announce(data.announce);
  }

  function replaceBlock(id, data) {
    const block = document.getElementById(id);
    if (!block || block.dataset[id === 'agent-live' ? 'agentId' : 'eventId'] !== data.id) return;
    const fresh = fragment(data.html);
    if (!fresh) return;
    block.replaceWith(fresh);
    refreshTimes(fresh);
    if (data.announce) announce(data.announce);
  }

  function setDelivered(data) {
    for (const cell of document.querySelectorAll(`tr[data-event-id="${CSS.escape(data.id)}"] [data-cell="delivered"]`)) {
      cell.textContent = data.text;
    }
    const live = document.getElementById('event-live');
    if (live && live.dataset.eventId === data.id) {
      const span = live.querySelector('[data-cell="delivered"]');
      if (span) span.textContent = data.long;
    }
  }

  function setDeployments(data) {
    const row = document.querySelector(`tr[data-event-id="${CSS.escape(data.id)}"]`);
    if (!row) return;
    for (const [cell, html] of [['deployments', data.deployments], ['latency', data.latency]]) {
      const td = row.querySelector(`[data-cell="${cell}"]`);
      if (!td) continue;
      const template = document.createElement('template');
      template.innerHTML = html;
      td.replaceChildren(template.content);
    }
  }

  const handlers = {
    'event-row': addEventRow,
    'agent-row': replaceAgentRow,
    'agent-live': (d) => replaceBlock('agent-live', d),
    'event-live': (d) => replaceBlock('event-live', d),
    delivered: setDelivered,
    deployments: setDeployments,
    tick: () => refreshTimes(document),
  };

  // A form (sign-out, search) takes the page elsewhere: the stream has nothing more to say to it.
  let leaving = false;
  let source;
  let lastId = new URL(url, location.href).searchParams.get('from') || '';

  function connect() {
    const target = new URL(url, location.href);
    if (lastId) target.searchParams.set('from', lastId);
    source = new EventSource(target.pathname + target.search);
    const remember = (e) => {
      if (e.lastEventId) lastId = e.lastEventId;
    };
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => {
        remember(e);
        handle(JSON.parse(e.data));
      });
    }
    source.addEventListener('ready', (e) => {
      remember(e);
      setIndicator('live', 'Live updates: on');
    });
    // This replica no longer knows what the page missed (it restarted, or much happened): start afresh.
    source.addEventListener('resync', () => {
      source.close();
      // At most one reload in a while, so that a replica that keeps saying so cannot loop the page.
      const last = Number(sessionStorage.getItem('kasgate-resync') || 0);
      if (Date.now() - last < 30_000) {
        setIndicator('down', 'Live updates: off (reload the page)');
        return;
      }
      sessionStorage.setItem('kasgate-resync', String(Date.now()));
      location.reload();
    });
    source.addEventListener('signed-out', (e) => {
      source.close();
      if (leaving) return;
      const reason = JSON.parse(e.data).reason;
      location.assign(reason === 'signed_out' ? '/ui/login?signed_out=1' : '/ui/login?expired=1');
    });
    // The replica is shutting down: come back in a moment, to whichever replica answers.
    source.addEventListener('bye', (e) => {
      remember(e);
      source.close();
      setIndicator('down', 'Live updates: reconnecting');
      if (!leaving) setTimeout(connect, 1000 + Math.random() * 2000);
    });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) setIndicator('down', 'Live updates: off (reload the page)');
      else setIndicator('down', 'Live updates: reconnecting');
    });
  }

  connect();
  document.addEventListener('submit', () => {
    leaving = true;
    source.close();
  });
  window.addEventListener('pagehide', () => {
    leaving = true;
    source.close();
  });

  function refreshTimesEvery(ms) {
    setInterval(() => refreshTimes(document), ms);
  }
})();

function ago(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

function refreshTimes(root) {
  for (const el of root.querySelectorAll('time[data-prefix]')) {
    el.textContent = el.dataset.prefix + ago(el.getAttribute('datetime'));
  }
}
