// deployd status page. Plain JavaScript, no build step. The page is
// rendered by the server; this script only
//   - asks for confirmation and calls the REST API for the buttons
//     (rollback, cancel, redeploy, pause, resume, maintenance),
//   - follows deployd's event stream (GET /api/v1/events) and swaps in
//     server-rendered partials for what changed,
//   - streams a running deployment's steps and log over SSE,
//   - says how fresh the page is, and turns the buttons off while deployd
//     does not answer,
//   - keeps relative times fresh.
// Every DOM write is textContent/setAttribute, or a partial our own server
// rendered with html/template (no inline script or style: the CSP forbids
// them anyway).
'use strict';

(function () {
  const CLOCK_MS = 30000;
  // The stream's hello says how often the server sends a heartbeat; this is
  // what the page assumes until it has heard one.
  const DEFAULT_HEARTBEAT_MS = 5000;
  // After the stream broke, the page waits this long for it to come back
  // before it says it is disconnected, so a reconnect does not flash a
  // banner.
  const RECONNECT_GRACE_MS = 3000;
  // Reconnects wait 0.5 s, then twice as long each time, up to 5 s.
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 5000;
  const FRESHNESS_MS = 1000;
  const ELAPSED_MS = 1000;
  const MAX_LOG_LINES = 2000;
  const FINAL = new Set(['succeeded', 'failed', 'interrupted', 'cancelled']);

  // streams maps a deployment id to its EventSource; one per deployment.
  const streams = new Map();
  let refreshing = false;
  let refreshAgain = false;
  // The partials last swapped in, by service, and the history's: a fresh
  // one that is the same is not swapped in again.
  const cardHTML = new Map();
  let historyHTML = '';

  function csrfToken() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute('content') : '';
  }

  // flash shows a message with the time it was said, newest first. An
  // error stays until its close button dismisses it. A message about a
  // deployment (deployment set: "rollback of web started") goes once that
  // deployment is over; any other good news gives way to the next message.
  function flash(text, ok, deployment) {
    const el = document.getElementById('flash');
    if (!el) return;
    for (const old of el.querySelectorAll('.flash-msg.ok')) old.remove();
    const msg = document.createElement('span');
    msg.className = 'flash-msg ' + (ok ? 'ok' : 'error');
    if (deployment) msg.setAttribute('data-deployment', deployment);
    const now = new Date();
    const when = document.createElement('time');
    when.className = 'flash-time';
    when.setAttribute('datetime', now.toISOString());
    when.textContent = clock(now, true);
    const words = document.createElement('span');
    words.className = 'flash-text';
    words.textContent = text;
    const close = document.createElement('button');
    close.type = 'button';
    close.className = 'flash-close link-button';
    close.setAttribute('aria-label', 'Dismiss: ' + text);
    close.textContent = '×';
    msg.append(when, ' ', words, ' ', close);
    el.prepend(msg);
    if (deployment) watchFlash(msg, deployment);
  }

  // flashDone removes the messages about deployment id, which is over.
  function flashDone(id) {
    document.querySelectorAll('#flash .flash-msg[data-deployment]').forEach((m) => {
      if (m.getAttribute('data-deployment') === id) m.remove();
    });
  }

  // watchFlash removes msg once its deployment is over even when no
  // stream saw it end (it finished before the card showed it live): its
  // live box came and went, or its history row says it is done.
  function watchFlash(msg, id) {
    let seenLive = false;
    const timer = setInterval(() => {
      if (!msg.isConnected) { clearInterval(timer); return; }
      const live = currentLive(id) !== null;
      seenLive = seenLive || live;
      let done = seenLive && !live;
      for (const row of document.querySelectorAll('#history tr.deployment[data-id]')) {
        const st = row.getAttribute('data-id') === id ? row.querySelector('.status') : null;
        if (st && FINAL.has(st.getAttribute('data-status'))) done = true;
      }
      if (done) { msg.remove(); clearInterval(timer); }
    }, ELAPSED_MS);
  }

  document.addEventListener('click', (ev) => {
    const btn = ev.target instanceof Element ? ev.target.closest('#flash .flash-close') : null;
    if (btn) btn.closest('.flash-msg').remove();
  });

  // ---- time formatting (mirrors the server's template funcs) ----

  function relTime(then, now) {
    let s = Math.round((now - then) / 1000);
    if (s < 45) return 'just now';
    const m = Math.round(s / 60);
    if (m < 60) return m + ' min ago';
    const h = Math.floor(m / 60);
    if (h < 24) return h + ' h ago';
    return Math.floor(h / 24) + ' d ago';
  }

  function uptime(then, now) {
    const s = Math.max(0, Math.floor((now - then) / 1000));
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min';
    const h = Math.floor(m / 60);
    if (h < 24) return h + ' h ' + (m % 60) + ' min';
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  }

  function duration(ms) {
    if (ms < 0) ms = 0;
    if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
    const s = Math.floor(ms / 1000);
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + (s % 60) + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }

  function pad2(n) { return (n < 10 ? '0' : '') + n; }

  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

  // clock is d's local time of day, "18:36" or with seconds "18:36:02".
  function clock(d, seconds) {
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + (seconds ? ':' + pad2(d.getSeconds()) : '');
  }

  // localTime is the reader's own clock beside the server's UTC time:
  // " (18:36 local)", with the date when it is not today here.
  function localTime(d, now) {
    const day = d.toDateString() === now.toDateString() ? '' : MONTHS[d.getMonth()] + ' ' + d.getDate() + ' ';
    return ' (' + day + clock(d, false) + ' local)';
  }

  function updateClocks(root) {
    const now = Date.now();
    (root || document).querySelectorAll('.local-time[data-time]').forEach((el) => {
      const then = Date.parse(el.getAttribute('data-time'));
      if (!isNaN(then)) el.textContent = localTime(new Date(then), new Date(now));
    });
    (root || document).querySelectorAll('time.reltime[datetime]').forEach((t) => {
      const then = Date.parse(t.getAttribute('datetime'));
      if (!isNaN(then)) t.textContent = relTime(then, now);
    });
    (root || document).querySelectorAll('time.uptime[datetime]').forEach((t) => {
      const then = Date.parse(t.getAttribute('datetime'));
      if (!isNaN(then)) t.textContent = uptime(then, now);
    });
  }

  function updateElapsed() {
    const now = Date.now();
    document.querySelectorAll('li.step[data-status="running"][data-started]').forEach((li) => {
      const then = Date.parse(li.getAttribute('data-started'));
      const el = li.querySelector('.step-elapsed');
      if (el && !isNaN(then)) el.textContent = duration(now - then);
    });
  }

  // ---- confirmation dialog ----

  // confirmAction resolves true only when the user pressed the yes button;
  // Esc, the no button and closing the dialog all mean no. With input set
  // the dialog also asks for a line of text, left in input.value. With
  // schema set ({warning, ack}) it shows the warning and, when ack is
  // set, the yes button works only once its checkbox is ticked.
  function confirmAction(message, input, schema) {
    const dialog = document.getElementById('confirm-dialog');
    if (!dialog || typeof dialog.showModal !== 'function') {
      if (input) {
        const v = window.prompt(message, '');
        if (v === null) return Promise.resolve(false);
        input.value = v;
        return Promise.resolve(true);
      }
      if (schema && schema.warning) message += '\n\n' + schema.warning;
      if (schema && schema.ack) message += '\n\n' + schema.ack + '?';
      return Promise.resolve(window.confirm(message));
    }
    const yes = document.getElementById('confirm-yes');
    const no = document.getElementById('confirm-no');
    const label = document.getElementById('confirm-input-label');
    const field = document.getElementById('confirm-input');
    const warning = document.getElementById('confirm-schema');
    const ackLabel = document.getElementById('confirm-ack-label');
    const ack = document.getElementById('confirm-ack');
    document.getElementById('confirm-message').textContent = message;
    if (label && field) {
      label.hidden = !input;
      field.value = '';
    }
    if (warning) {
      warning.textContent = (schema && schema.warning) || '';
      warning.hidden = !(schema && schema.warning);
    }
    const needAck = !!(schema && schema.ack && ackLabel && ack);
    const onAck = () => { yes.disabled = !ack.checked; };
    if (ackLabel && ack) {
      ackLabel.hidden = !needAck;
      ack.checked = false;
      document.getElementById('confirm-ack-text').textContent = needAck ? schema.ack : '';
    }
    yes.disabled = needAck;
    if (needAck) ack.addEventListener('change', onAck);
    return new Promise((resolve) => {
      const onYes = () => { if (!yes.disabled) dialog.close('yes'); };
      const onNo = () => dialog.close('no');
      const onClose = () => {
        yes.removeEventListener('click', onYes);
        no.removeEventListener('click', onNo);
        dialog.removeEventListener('close', onClose);
        if (needAck) ack.removeEventListener('change', onAck);
        if (input && field) input.value = field.value;
        if (label) label.hidden = true;
        if (warning) warning.hidden = true;
        if (ackLabel) ackLabel.hidden = true;
        yes.disabled = false;
        resolve(dialog.returnValue === 'yes');
      };
      yes.addEventListener('click', onYes);
      no.addEventListener('click', onNo);
      dialog.addEventListener('close', onClose);
      dialog.returnValue = '';
      dialog.showModal();
      // The safe choice has the focus, so a stray Enter does nothing
      // harmful; when a message is asked for, the field has it.
      if (input && field) field.focus(); else no.focus();
    });
  }

  // ---- REST calls ----

  async function api(method, path, body) {
    const headers = { 'Accept': 'application/json', 'X-CSRF-Token': csrfToken() };
    const init = { method: method, credentials: 'same-origin', headers: headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      return { ok: false, status: 0, error: 'deployd did not answer: ' + e.message };
    }
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = null;
    }
    if (res.ok) return { ok: true, status: res.status, data: data };
    let msg = (data && data.error) ? data.error : ('HTTP ' + res.status);
    if (res.status === 401) msg = 'Your session has ended; log in again. (' + msg + ')';
    if (res.status === 403) msg = 'Refused (403): ' + msg;
    if (res.status === 409) msg = 'Not now (409): ' + msg;
    return { ok: false, status: res.status, error: msg, data: data };
  }

  async function onRollback(btn) {
    const service = btn.getAttribute('data-service');
    const schema = { warning: btn.getAttribute('data-schema'), ack: btn.getAttribute('data-schema-ack') };
    if (!(await confirmAction(btn.getAttribute('data-confirm'), null, schema))) return;
    btn.disabled = true;
    // Confirmed only when the dialog asked for it: a breaking change the
    // page did not know of yet is refused, and its message says so.
    const body = schema.ack ? { confirm_schema_change: true } : undefined;
    const r = await api('POST', '/api/v1/services/' + encodeURIComponent(service) + '/rollback', body);
    btn.disabled = false;
    if (!r.ok) { flash(r.error, false); btn.focus(); return; }
    flash('Rollback of ' + service + ' started (' + r.data.id + ').', true, r.data.id);
    await refreshCard(service);
    focusProgress(service, r.data.id);
  }

  // focusProgress moves the focus to the progress of deployment id, so
  // that it is not lost to the page when the dialog's button goes; to the
  // service's card when the deployment is already over.
  function focusProgress(service, id) {
    const live = currentLive(id);
    if (live) { live.focus(); return; }
    const card = document.getElementById('service-' + service);
    const head = card ? card.querySelector('.card-head h2') : null;
    if (head) head.focus();
  }

  async function onCancel(btn) {
    const id = btn.getAttribute('data-deployment');
    const msg = btn.getAttribute('data-confirm') || ('Cancel deployment ' + id + '?');
    if (!(await confirmAction(msg))) return;
    btn.disabled = true;
    const r = await api('POST', '/api/v1/deployments/' + encodeURIComponent(id) + '/cancel');
    btn.disabled = false;
    if (!r.ok) { flash(r.error, false); return; }
    flash('Cancelling ' + id + '; the deployment stops at its next safe point.', true, id);
  }

  async function onRedeploy(btn) {
    const service = btn.getAttribute('data-service');
    const body = { image: btn.getAttribute('data-image') };
    const commit = btn.getAttribute('data-commit');
    if (commit) body.commit = commit;
    if (!(await confirmAction(btn.getAttribute('data-confirm')))) return;
    btn.disabled = true;
    const r = await api('POST', '/api/v1/services/' + encodeURIComponent(service) + '/deployments', body);
    btn.disabled = false;
    if (!r.ok) { flash(r.error, false); return; }
    flash('Deploy of ' + body.image + ' to ' + service + ' started (' + r.data.id + ').', true, r.data.id);
    await refreshCard(service);
    await refreshHistory();
  }

  // onTraffic pauses, resumes or switches maintenance for the button's
  // service, after the confirmation (and, for maintenance on, the message).
  async function onTraffic(btn, action, body, done) {
    const service = btn.getAttribute('data-service');
    const input = action === 'maintenance' && body.on ? { value: '' } : null;
    if (!(await confirmAction(btn.getAttribute('data-confirm'), input))) return;
    if (input) body.message = input.value.trim();
    btn.disabled = true;
    const r = await api('POST', '/api/v1/services/' + encodeURIComponent(service) + '/' + action, body);
    btn.disabled = false;
    if (!r.ok) { flash(r.error, false); return; }
    flash(done.replace('%s', service), true);
    await refreshCard(service);
  }

  document.addEventListener('click', (ev) => {
    const btn = ev.target instanceof Element ? ev.target.closest('button') : null;
    if (!btn || btn.disabled) return;
    if (btn.classList.contains('rollback')) { ev.preventDefault(); onRollback(btn); }
    else if (btn.classList.contains('cancel')) { ev.preventDefault(); onCancel(btn); }
    else if (btn.classList.contains('redeploy')) { ev.preventDefault(); onRedeploy(btn); }
    else if (btn.classList.contains('pause')) { ev.preventDefault(); onTraffic(btn, 'pause', undefined, '%s paused: new requests are held.'); }
    else if (btn.classList.contains('resume')) { ev.preventDefault(); onTraffic(btn, 'resume', undefined, '%s resumed.'); }
    else if (btn.classList.contains('maintenance-on')) { ev.preventDefault(); onTraffic(btn, 'maintenance', { on: true }, '%s is in maintenance.'); }
    else if (btn.classList.contains('maintenance-off')) { ev.preventDefault(); onTraffic(btn, 'maintenance', { on: false }, 'Maintenance of %s ended.'); }
  });

  // ---- partials ----

  async function fetchPartial(path) {
    let res;
    try {
      res = await fetch(path, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } });
    } catch (e) {
      return null;
    }
    if (res.status === 401) {
      window.location.assign('/login');
      return null;
    }
    if (!res.ok) return null;
    const tpl = document.createElement('template');
    tpl.innerHTML = await res.text();
    return tpl.content.firstElementChild;
  }

  // loadCard fetches the service's card and swaps it in; only refreshCard
  // calls it, one at a time per service, so that an older answer never
  // replaces a newer one.
  async function loadCard(service) {
    const old = document.getElementById('service-' + service);
    if (!old) return;
    const fresh = await fetchPartial('/partials/services/' + encodeURIComponent(service));
    if (!fresh || !fresh.matches('section.service')) return;
    // An event often changes nothing the card shows (a heartbeat of the
    // containers, a step's log): then the card, and the focus or the
    // selection in it, stay as they are.
    const html = fresh.outerHTML;
    if (cardHTML.get(service) === html && document.getElementById('service-' + service) === old) return;
    cardHTML.set(service, html);
    // A deployment already streaming keeps its node, so the log gathered so
    // far survives the swap.
    // Taken before anything moves: moving the focused node blurs it.
    const focused = document.activeElement;
    const hadFocus = focused && old.contains(focused) ? focused.className : null;
    const oldLive = old.querySelector('.deployment-live[data-deployment]');
    const newLive = fresh.querySelector('.deployment-live[data-deployment]');
    if (oldLive && newLive && oldLive.getAttribute('data-deployment') === newLive.getAttribute('data-deployment')) {
      const cancelNew = newLive.querySelector('button.cancel');
      const cancelOld = oldLive.querySelector('button.cancel');
      if (!cancelNew && cancelOld) cancelOld.remove();
      newLive.replaceWith(oldLive);
    }
    old.replaceWith(fresh);
    if (hadFocus !== null) {
      // The live box (or a node in it) came along: focus it again, as the
      // rollback dialog left it. Anything else is found by its class.
      const again = fresh.contains(focused) ? focused : (hadFocus ? fresh.querySelector('.' + hadFocus.split(' ')[0]) : null);
      if (again) again.focus({ preventScroll: true });
    }
    updateClocks(fresh);
    applyOffline(fresh);
    watchLive(fresh);
  }

  async function loadHistory() {
    const old = document.getElementById('history-section');
    if (!old) return;
    const fresh = await fetchPartial('/partials/history');
    if (!fresh || fresh.id !== 'history-section') return;
    if (old.contains(document.activeElement)) return; // do not yank a focused button away
    if (fresh.outerHTML === historyHTML) return;
    historyHTML = fresh.outerHTML;
    old.replaceWith(fresh);
    updateClocks(fresh);
    applyOffline(fresh);
  }

  // refreshAll fetches every card and the history again. Asked while it
  // runs, it runs once more afterwards: what it fetched may predate the ask.
  async function refreshAll() {
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    try {
      do {
        refreshAgain = false;
        const cards = Array.from(document.querySelectorAll('section.service[data-service]'));
        for (const c of cards) {
          await refreshCard(c.getAttribute('data-service'));
        }
        await refreshHistory();
      } while (refreshAgain);
    } finally {
      refreshing = false;
    }
  }

  // ---- the system event stream ----

  // refreshes maps a card's service (and "" the history) to its running
  // refresh. One runs at a time per key: a burst of events (a step ends,
  // its containers change) costs one fetch that starts at once and, when
  // more came in meanwhile, one more after, and an answer fetched before
  // another can never be swapped in after it. The promise settles when the
  // last run is done.
  const refreshes = new Map();

  function coalesce(key, load) {
    let st = refreshes.get(key);
    if (!st) { st = { running: null, again: false }; refreshes.set(key, st); }
    if (st.running) { st.again = true; return st.running; }
    st.running = (async () => {
      try {
        do { st.again = false; await load(); } while (st.again);
      } finally {
        st.running = null;
      }
    })();
    return st.running;
  }

  function refreshCard(service) {
    return service ? coalesce('service:' + service, () => loadCard(service)) : Promise.resolve();
  }

  function refreshHistory() {
    return coalesce('', loadHistory);
  }

  // link is the page's connection to deployd: the stream, when it was last
  // heard from, and since when it has been broken.
  const link = { es: null, after: '', leaving: false, heard: 0, brokenAt: 0, failures: 0, heartbeatMs: DEFAULT_HEARTBEAT_MS, offline: false, retry: null };

  function heard() {
    link.heard = Date.now();
    link.brokenAt = 0;
    link.failures = 0;
    showFreshness();
  }

  function onSystemEvent(msg) {
    heard();
    if (msg.lastEventId) link.after = msg.lastEventId;
    let ev;
    try { ev = JSON.parse(msg.data); } catch (e) { return; }
    switch (ev.type) {
      case 'hello':
        if (ev.heartbeat_ms > 0) link.heartbeatMs = ev.heartbeat_ms;
        // Without a resume (deployd restarted, or the page was away too
        // long) the page may have missed anything since it last heard.
        if (!ev.resumed) refreshAll();
        break;
      case 'reset':
        refreshAll();
        break;
      case 'deployment':
        refreshCard(ev.service);
        refreshHistory();
        break;
      case 'step':
        // A step's end changes the card's containers and state sentence;
        // its start is shown by the deployment's own stream.
        if (ev.status !== 'running') refreshCard(ev.service);
        break;
      case 'service':
      case 'containers':
      case 'notice':
        refreshCard(ev.service);
        break;
    }
  }

  // connect opens the stream after the last event the page has seen: the
  // one it was rendered at, then the last one it heard. A new EventSource
  // cannot send Last-Event-ID, so the cursor goes in ?after=.
  function connect() {
    if (link.retry) { clearTimeout(link.retry); link.retry = null; }
    if (link.es) link.es.close();
    const es = new EventSource('/api/v1/events' + (link.after ? '?after=' + encodeURIComponent(link.after) : ''));
    link.es = es;
    for (const type of ['hello', 'reset', 'heartbeat', 'deployment', 'step', 'service', 'containers', 'notice']) {
      es.addEventListener(type, onSystemEvent);
    }
    es.addEventListener('error', () => {
      // A page being left (a link, the logout form) loses its stream on the
      // way out; reconnecting then would only race the navigation.
      if (link.es !== es || link.leaving) return;
      if (!link.brokenAt) link.brokenAt = Date.now();
      showFreshness();
      // The page reconnects by itself rather than leave it to the browser,
      // which gives up on some failures (a refused connection, a 401 or
      // 429) and retries others. A partial's 401 sends the operator to the
      // login page first.
      es.close();
      link.es = null;
      const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * Math.pow(2, link.failures++));
      link.retry = setTimeout(async () => {
        link.retry = null;
        await fetchPartial('/partials/history');
        connect();
      }, delay);
    });
  }

  // showFreshness says how fresh the page is: "live", "updated 12 s ago",
  // or a banner once deployd has not answered for a while, with the
  // buttons off until it does.
  function showFreshness() {
    const now = Date.now();
    const age = link.heard ? now - link.heard : 0;
    const broken = link.brokenAt && now - link.brokenAt >= RECONNECT_GRACE_MS;
    const silent = link.heard && age > 2 * link.heartbeatMs + RECONNECT_GRACE_MS;
    if (silent && link.es && !link.leaving) {
      // Open but silent past two heartbeats (a hung deployd, a proxy that
      // holds the stream): start afresh rather than wait on it.
      if (!link.brokenAt) link.brokenAt = link.heard;
      link.es.close();
      link.es = null;
      link.retry = setTimeout(connect, RECONNECT_MIN_MS);
    }
    setOffline(Boolean(broken || silent));
    const el = freshnessElement();
    if (!el) return;
    if (!link.heard) {
      el.textContent = 'connecting…';
      el.setAttribute('data-state', 'connecting');
    } else if (!link.offline && age <= link.heartbeatMs + FRESHNESS_MS) {
      el.textContent = 'live';
      el.setAttribute('data-state', 'live');
    } else {
      el.textContent = 'updated ' + Math.round(age / 1000) + ' s ago';
      el.setAttribute('data-state', link.offline ? 'offline' : 'stale');
    }
    const banner = document.getElementById('disconnected');
    if (banner && link.offline) {
      const since = link.heard || link.brokenAt;
      banner.textContent = 'Disconnected from deployd since ' + clockTime(since) + ' (' +
        Math.round((now - since) / 1000) + ' s ago). What you see may be out of date; the buttons are off until deployd answers again.';
    }
  }

  function clockTime(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function freshnessElement() {
    let el = document.getElementById('freshness');
    if (el) return el;
    const bar = document.querySelector('header.topbar');
    if (!bar) return null;
    el = document.createElement('span');
    el.id = 'freshness';
    bar.insertBefore(el, bar.querySelector('.brand') ? bar.querySelector('.brand').nextSibling : bar.firstChild);
    return el;
  }

  // The buttons that act on deployd; the page turns them off while it is
  // disconnected and marks the ones it turned off, so that buttons the
  // server rendered disabled (a busy rollback) stay so on return.
  const ACTIONS = 'button.rollback, button.cancel, button.redeploy, button.pause, button.resume, button.maintenance-on, button.maintenance-off';

  function setOffline(offline) {
    if (offline === link.offline) return;
    link.offline = offline;
    let banner = document.getElementById('disconnected');
    if (offline && !banner) {
      banner = document.createElement('p');
      banner.id = 'disconnected';
      banner.setAttribute('role', 'alert');
      const flashEl = document.getElementById('flash');
      if (flashEl) flashEl.parentNode.insertBefore(banner, flashEl);
      else document.body.insertBefore(banner, document.body.firstChild);
    }
    if (!offline && banner) banner.remove();
    applyOffline(document);
    if (!offline) refreshAll();
  }

  function applyOffline(root) {
    root.querySelectorAll(ACTIONS).forEach((b) => {
      if (link.offline && !b.disabled) {
        b.disabled = true;
        b.setAttribute('data-offline', '');
      } else if (!link.offline && b.hasAttribute('data-offline')) {
        b.disabled = false;
        b.removeAttribute('data-offline');
      }
    });
  }

  // ---- live deployments ----

  function stepItem(live, name) {
    const list = live.querySelector('ol.steps');
    if (!list) return null;
    for (const li of list.querySelectorAll('li.step')) {
      if (li.getAttribute('data-step') === name) return li;
    }
    const li = document.createElement('li');
    li.className = 'step';
    li.setAttribute('data-step', name);
    for (const cls of ['step-name', 'step-status', 'step-elapsed']) {
      const span = document.createElement('span');
      span.className = cls;
      li.appendChild(span);
      li.appendChild(document.createTextNode(' '));
    }
    li.querySelector('.step-name').textContent = name;
    list.appendChild(li);
    return li;
  }

  // progressPrefix names a live deployment for the progress region:
  // "deploy app:v3 of web".
  function progressPrefix(live) {
    return (live.getAttribute('data-kind') || 'deployment') + ' ' + (live.getAttribute('data-image') || '') +
      ' of ' + (live.getAttribute('data-service') || '');
  }

  // announce says in live's polite region how far it got: "deploy app:v3
  // of web: health 1/2 healthy", "…: switch succeeded".
  function announce(live, text) {
    const region = live.querySelector('.live-progress');
    if (region) region.textContent = progressPrefix(live) + ': ' + text;
  }

  function onStep(live, ev) {
    const li = stepItem(live, ev.step);
    if (!li) return;
    announce(live, ev.step + ' ' + (ev.status === 'running' && ev.message ? ev.message : ev.status));
    li.setAttribute('data-status', ev.status);
    li.querySelector('.step-status').textContent = ev.status;
    const t = Date.parse(ev.time);
    if (ev.status === 'running') {
      if (!isNaN(t)) li.setAttribute('data-started', ev.time);
    } else {
      const started = Date.parse(li.getAttribute('data-started'));
      if (!isNaN(t) && !isNaN(started)) li.querySelector('.step-elapsed').textContent = duration(t - started);
    }
    if (ev.message) {
      let m = li.querySelector('.step-message');
      if (!m) {
        m = document.createElement('span');
        m.className = 'step-message';
        li.appendChild(document.createTextNode(' '));
        li.appendChild(m);
      }
      m.textContent = ev.message;
    }
  }

  function appendLog(live, line) {
    const pre = live.querySelector('pre.log');
    if (!pre) return;
    pre.appendChild(document.createTextNode(line + '\n'));
    while (pre.childNodes.length > MAX_LOG_LINES) pre.removeChild(pre.firstChild);
    pre.scrollTop = pre.scrollHeight;
  }

  function finished(id, live) {
    const es = streams.get(id);
    if (es) es.close();
    streams.delete(id);
    const st = live.querySelector('.live-status');
    announce(live, st && st.textContent ? st.textContent : 'finished');
    flashDone(id);
    const card = live.closest('section.service');
    if (card) {
      const service = card.getAttribute('data-service');
      const hadFocus = live.contains(document.activeElement);
      // The refreshed card has no progress box any more: the focus that
      // was on it goes to the card's title rather than to the page.
      refreshCard(service).then(() => {
        if (hadFocus && (!document.activeElement || document.activeElement === document.body)) focusProgress(service, id);
      });
      refreshHistory();
    } else if (live.closest('.deployment-page')) {
      // The detail page shows the final record, error included.
      window.location.reload();
    }
  }

  // currentLive finds the node of deployment id now in the document: a card
  // swap may have moved it.
  function currentLive(id) {
    for (const el of document.querySelectorAll('.deployment-live[data-deployment]')) {
      if (el.getAttribute('data-deployment') === id) return el;
    }
    return null;
  }

  function watch(id) {
    if (streams.has(id)) return;
    const es = new EventSource('/api/v1/deployments/' + encodeURIComponent(id) + '/events');
    streams.set(id, es);
    const parse = (msg) => { try { return JSON.parse(msg.data); } catch (e) { return null; } };
    es.addEventListener('step', (msg) => {
      const ev = parse(msg); const live = currentLive(id);
      if (ev && live) onStep(live, ev);
    });
    es.addEventListener('log', (msg) => {
      const ev = parse(msg); const live = currentLive(id);
      if (ev && live) appendLog(live, (ev.step ? '[' + ev.step + '] ' : '') + ev.message);
    });
    es.addEventListener('status', (msg) => {
      const ev = parse(msg); const live = currentLive(id);
      if (!ev || !live) return;
      const st = live.querySelector('.live-status');
      if (st) { st.textContent = ev.status; st.setAttribute('data-status', ev.status); }
      if (ev.message) appendLog(live, ev.status + ': ' + ev.message);
      if (FINAL.has(ev.status)) {
        const service = live.getAttribute('data-service') || '';
        const kind = live.getAttribute('data-kind') || 'deployment';
        // "Rollback of web succeeded." reads better than the deployment's
        // id, which the history row and its details link still carry.
        flash(kind.charAt(0).toUpperCase() + kind.slice(1) + ' of ' + service + ' ' + ev.status +
          (ev.message ? ': ' + ev.message : '.'), ev.status === 'succeeded');
        finished(id, live);
      }
    });
    es.addEventListener('error', () => {
      // A stream that ended with its deployment is closed above; one the
      // server refused (404, 401) is closed by the browser. Either way the
      // card's next refresh shows the truth.
      if (es.readyState === EventSource.CLOSED) {
        streams.delete(id);
        const live = currentLive(id);
        if (live) finished(id, live);
      }
    });
  }

  function watchLive(root) {
    (root || document).querySelectorAll('.deployment-live[data-deployment]').forEach((live) => {
      watch(live.getAttribute('data-deployment'));
    });
  }

  function start() {
    updateClocks();
    watchLive();
    setInterval(updateClocks, CLOCK_MS);
    setInterval(updateElapsed, ELAPSED_MS);
    // Only signed-in pages (they carry a CSRF token) follow the stream.
    if (!csrfToken()) return;
    window.addEventListener('beforeunload', () => { link.leaving = true; });
    window.addEventListener('pagehide', () => { link.leaving = true; });
    // Back from the back-forward cache the page is live again.
    window.addEventListener('pageshow', (ev) => {
      link.leaving = false;
      if (ev.persisted) { connect(); refreshAll(); }
    });
    const after = document.querySelector('meta[name="events-after"]');
    link.after = after ? after.getAttribute('content') : '';
    connect();
    showFreshness();
    setInterval(showFreshness, FRESHNESS_MS);
    // A tab in the background may have been throttled or put to sleep:
    // coming back, it asks for everything at once rather than showing what
    // it last drew.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible') return;
      if (!link.es) connect();
      refreshAll();
      showFreshness();
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
