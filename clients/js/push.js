/*! push.js: the browser client of mod_push (Apache httpd server push). No dependencies.
 *  A plain <script> defines window.PushClient; push.mjs is the ES module entry
 *  (import { PushClient } from '/push.mjs'). Documentation: docs/client.md. */
(function (root, factory) {
  var PushClient = factory(root);
  PushClient.PushClient = PushClient;
  if (typeof module === 'object' && module && module.exports) module.exports = PushClient;
  if (root) root.PushClient = PushClient;
}(typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this, function (root) {
  'use strict';

  var TRANSPORTS = ['websocket', 'sse', 'longpoll', 'poll'];
  var CHANNEL = /^[A-Za-z0-9_.:@~-]{1,128}$/;
  var DEFAULTS = {
    base: '/sub/',              // the push-subscriber location (relative or absolute URL)
    wsUrl: null,                // WebSocket URL prefix; default: base with ws:// or wss://
    publishUrl: '/pub/',        // the push-publisher location (HTTP publishing); null: none
    presenceUrl: '/presence/',  // the push-presence location
    transports: TRANSPORTS,     // tried in this order
    name: null,                 // presence identity (?name=, needs PushPresenceNames on)
    params: null,               // extra query parameters for every subscriber URL
    wsPublish: true,            // publish over the WebSocket when it is open
    minDelay: 500,              // reconnect backoff: first cap (ms) ...
    maxDelay: 15000,            // ... and the largest cap (ms)
    pollInterval: 2000,         // short polling: time between two polls (ms)
    presenceInterval: 10000,    // short polling: refresh of the presence list (ms)
    pingInterval: 25000         // WebSocket: heartbeat period; 0: none (ms)
  };

  // Full jitter: a random delay between 0 and min(max, min * 2^attempt).
  function backoff(attempt, min, max) {
    return Math.random() * Math.min(max, min * Math.pow(2, attempt));
  }

  function pushError(code, message, status) {
    var e = new Error(message || code);
    e.code = code;
    e.status = status || 0;
    return e;
  }

  function checkChannel(channel) {
    if (typeof channel !== 'string' || !CHANNEL.test(channel))
      throw new TypeError('push.js: invalid channel name ' + JSON.stringify(channel));
  }

  // A listener that throws must not break the client.
  function report(e) {
    if (root.reportError) root.reportError(e);
    else setTimeout(function () { throw e; });
  }

  // ---- events -----------------------------------------------------------------

  function Emitter() {}
  Emitter.prototype.on = function (type, fn) {
    var l = this._l || (this._l = {});
    (l[type] || (l[type] = [])).push(fn);
    return this;
  };
  Emitter.prototype.off = function (type, fn) {
    var a = this._l && this._l[type], i = a ? a.indexOf(fn) : -1;
    if (i >= 0) a.splice(i, 1);
    return this;
  };
  Emitter.prototype.emit = function (type, ev) {
    var a = this._l && this._l[type];
    if (a) a.slice().forEach(function (fn) {
      try { fn.call(this, ev); } catch (e) { report(e); }
    }, this);
  };

  // ---- a subscription: one channel ------------------------------------------------

  function Subscription(client, channel, opts) {
    this.client = client;
    this.channel = channel;
    this.presence = !!opts.presence;
    this.lastId = opts.lastId == null ? null : +opts.lastId;
    this.members = null;        // presence list, kept up to date with presence: true
    this.live = false;
  }
  Subscription.prototype = Object.create(Emitter.prototype);
  Subscription.prototype.unsubscribe = function () {
    if (this.client._subs[this.channel] === this) this.client.unsubscribe(this.channel);
  };

  // ---- the client -----------------------------------------------------------------

  function PushClient(options) {
    var o = this.options = {}, k;
    options = options || {};
    for (k in DEFAULTS) o[k] = options[k] !== undefined ? options[k] : DEFAULTS[k];
    this._WS = options.WebSocket || root.WebSocket;
    this._fetch = options.fetch || (root.fetch && root.fetch.bind(root));
    var ok = {
      websocket: !!this._WS,
      sse: !!(root.ReadableStream && root.TextDecoder && root.AbortController),
      longpoll: true, poll: true
    };
    this.transports = o.transports.filter(function (t) { return ok[t]; });
    if (!this.transports.length || !this._fetch) throw new TypeError('push.js: no usable transport');
    this.transport = null;       // the transport in use, once something is subscribed
    this.closed = false;
    this._ti = 0;
    this._subs = {};
    this._ws = null;             // {sock, ok, first, seen}
    this._wsWait = null;         // a reconnect timer or a probe in flight
    this._wsAttempt = 0;
    this._wsRefused = 0;
    this._wsPub = !!o.wsPublish;
    this._ref = 0;
    this._pending = {};
  }
  PushClient.prototype = Object.create(Emitter.prototype);
  PushClient.prototype.constructor = PushClient;
  PushClient.TRANSPORTS = TRANSPORTS.slice();
  PushClient.backoff = backoff;
  PushClient.version = '1.0.0';

  var P = PushClient.prototype;

  P.subscribe = function (channel, opts, handler) {
    if (typeof opts === 'function') { handler = opts; opts = null; }
    checkChannel(channel);
    if (this.closed) throw new Error('push.js: the client is closed');
    var sub = this._subs[channel];
    if (!sub) {
      sub = this._subs[channel] = new Subscription(this, channel, opts || {});
      this._start(sub);
    }
    if (handler) sub.on('message', handler);
    return sub;
  };

  P.unsubscribe = function (channel) {
    var sub = this._subs[channel];
    if (!sub) return false;
    delete this._subs[channel];
    sub.live = false;
    if (this.transport !== 'websocket') this._chanStop(sub);
    else if (!Object.keys(this._subs).length) this._stopAll();
    else if (this._ws && this._ws.sock.readyState === 1) this._wsSend({ type: 'unsubscribe', channel: channel });
    return true;
  };

  P.publish = function (channel, data, opts) {
    try { checkChannel(channel); } catch (e) { return Promise.reject(e); }
    var self = this, event = opts && opts.event || null, ws = this._ws;
    if (typeof data !== 'string') data = JSON.stringify(data);
    if (ws && ws.sock.readyState === 1 && this._wsPub) {
      var ref = 'p' + ++this._ref;
      return new Promise(function (resolve, reject) {
        self._pending[ref] = { resolve: resolve, reject: reject, channel: channel, data: data, event: event };
        var m = { type: 'publish', channel: channel, data: data, ref: ref };
        if (event) m.event = event;
        self._wsSend(m);
      });
    }
    return this._httpPublish(channel, data, event);
  };

  P.presence = function (channel) {
    try { checkChannel(channel); } catch (e) { return Promise.reject(e); }
    return this._json(this._url(this.options.presenceUrl, channel), { cache: 'no-store' });
  };

  P.close = function () {
    if (this.closed) return;
    this._stopAll();
    this.closed = true;
    this._subs = {};
    this.emit('close', { transport: this.transport, reason: 'client closed' });
  };

  // ---- helpers ------------------------------------------------------------------------

  P._url = function (base, channel, query) {
    var u = new URL(base + channel, root.location && root.location.href), p = this.options.params, k;
    if (p) for (k in p) u.searchParams.set(k, p[k]);
    if (query) for (k in query) if (query[k] != null) u.searchParams.set(k, query[k]);
    return u;
  };

  P._query = function (sub, mode) {
    var q = {};
    if (sub.lastId != null) q.last_id = sub.lastId;
    if (mode === 'poll') q.poll = 1;
    else if (sub.presence) q.presence = 1;
    if (mode === 'websocket' || mode === 'sse') q.name = this.options.name || null;
    return q;
  };

  P._delay = function (attempt) {
    return backoff(attempt, this.options.minDelay, this.options.maxDelay);
  };

  // fetch, then the JSON body; rejects with .code and .status on errors.
  P._json = function (url, init) {
    return this._fetch(url.href, init).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (res.ok) return body;
        throw pushError(body.error || 'http', body.message || 'HTTP ' + res.status, res.status);
      });
    }, function (e) { throw pushError('network', e.message); });
  };

  P._httpPublish = function (channel, data, event) {
    if (!this.options.publishUrl)
      return Promise.reject(pushError('unavailable', 'push.js: no WebSocket and no publishUrl to publish on'));
    var body = { data: data };
    if (event) body.event = event;
    return this._json(this._url(this.options.publishUrl, channel), {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
    }).then(function (r) { return { channel: r.channel, id: r.id, subscribers: r.subscribers }; });
  };

  // Can this channel be reached with a short poll? (decides whether a failing
  // transport is refused or whether the server is just not there right now)
  P._probe = function (sub) {
    return this._fetch(this._url(this.options.base, sub.channel, { poll: 1 }).href, { cache: 'no-store' })
      .then(function (res) { return res.ok; }, function () { return false; });
  };

  P._both = function (sub, type, ev) {
    sub.emit(type, ev);
    this.emit(type, ev);
  };

  P._setTransport = function (i, reason) {
    var prev = this.transport;
    this._ti = i;
    this.transport = this.transports[i];
    this.emit('transport', { transport: this.transport, previous: prev, reason: reason || null });
  };

  P._start = function (sub) {
    if (!this.transport) this._setTransport(0);
    if (this.transport !== 'websocket') this._chanStart(sub);
    else if (!this._ws && !this._wsWait) this._wsConnect();
    else if (this._ws && this._ws.sock.readyState === 1) this._wsSubscribe(sub);
  };

  // Give up the current transport for the next one; false when it was the last.
  P._fallback = function (reason) {
    if (this._ti >= this.transports.length - 1) return false;
    this._stopAll();
    this._setTransport(this._ti + 1, reason);
    for (var ch in this._subs) this._start(this._subs[ch]);
    return true;
  };

  P._stopAll = function () {
    var c = this._ws, ch;
    clearTimeout(this._wsWait);
    this._wsWait = null;
    if (c) {
      this._ws = null;
      c.sock.onopen = c.sock.onmessage = c.sock.onclose = null;
      clearInterval(c.ping);
      try { c.sock.close(1000); } catch (e) { /* already closed */ }
    }
    this._rejectPending();
    for (ch in this._subs) {
      this._chanStop(this._subs[ch]);
      this._subs[ch].live = false;
    }
  };

  // ---- deliveries ------------------------------------------------------------------------

  P._deliver = function (sub, m) {
    var id = +m.id;
    if (sub.lastId != null && id <= sub.lastId) return;    // seen already (resume overlap)
    sub.lastId = id;
    this._both(sub, 'message', {
      channel: sub.channel, id: id, event: m.event || null, data: m.data, time: m.time == null ? null : m.time
    });
  };

  P._gap = function (sub, g) {
    // "lost": the broker's ids started again; what follows starts at oldest_id.
    if (g.reason === 'lost') sub.lastId = g.oldest_id - 1;
    this._both(sub, 'gap', {
      channel: sub.channel, after: g.after, oldest_id: g.oldest_id, last_id: g.last_id, reason: g.reason
    });
  };

  P._live = function (sub, transport) {
    sub.live = true;
    var ev = { channel: sub.channel, transport: transport, lastId: sub.lastId };
    sub.emit('open', ev);
    this.emit('subscribed', ev);
    if (sub.presence) this._refreshPresence(sub);
  };

  P._presenceEvent = function (sub, m) {
    var ev = { channel: sub.channel, identity: m.identity, connections: m.connections, time: m.time };
    this._both(sub, m.type, ev);
    if (sub._pget) sub._pdirty = true;
    if (!sub.members) return;
    sub.members = sub.members.filter(function (x) { return x.identity !== m.identity; });
    if (m.type === 'join') {
      sub.members.push({ identity: m.identity, connections: m.connections, since: m.time });
      sub.members.sort(function (a, b) { return a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0; });
    }
    this._both(sub, 'presence', { channel: sub.channel, members: sub.members });
  };

  // GET the presence list; events that arrive meanwhile make it ask again.
  P._refreshPresence = function (sub) {
    var self = this;
    if (sub._pget) { sub._pdirty = true; return; }
    sub._pget = true;
    sub._pat = Date.now();
    this.presence(sub.channel).then(function (p) {
      sub._pget = false;
      if (self._subs[sub.channel] !== sub) return;
      if (sub._pdirty) { sub._pdirty = false; return self._refreshPresence(sub); }
      sub.members = p.members || [];
      self._both(sub, 'presence', { channel: sub.channel, members: sub.members });
    }, function () { sub._pget = false; });
  };

  // ---- WebSocket: every channel over one socket ---------------------------------------

  P._wsConnect = function () {
    var self = this, chans = Object.keys(this._subs), sock, conn;
    this._wsWait = null;
    if (!chans.length || this.closed) return;
    var first = this._subs[chans[0]], o = this.options;
    var u = this._url(o.wsUrl || o.base, first.channel, this._query(first, 'websocket'));
    if (!o.wsUrl) u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    try { sock = new this._WS(u.href); } catch (e) { return this._wsFailed(first); }
    conn = this._ws = { sock: sock, ok: false, first: first.channel, t0: Date.now(), asked: 0 };
    // The end of the socket: closed, or silent (a ping not answered within
    // pingInterval, or nothing within two of them after the handshake began):
    // a dead network path is not waited for.
    conn.gone = function (e) {
      if (self._ws !== conn) return;
      self._ws = null;
      sock.onopen = sock.onmessage = sock.onclose = null;
      clearInterval(conn.ping);
      if (e.code >= 4000) try { sock.close(e.code, e.reason); } catch (x) { /* closed */ }
      self._wsDown(conn, e);
      if (conn.ok) self._wsRetry();
      else self._wsFailed(first);
    };
    sock.onclose = conn.gone;
    if (o.pingInterval > 0) conn.ping = setInterval(function () {
      var now = Date.now();
      if (conn.ok ? conn.asked && now - conn.asked >= o.pingInterval : now - conn.t0 >= 2 * o.pingInterval)
        return conn.gone({ code: 4000, reason: 'no answer from the server' });
      if (conn.ok && !conn.asked) {
        conn.asked = now;
        self._wsSend({ type: 'ping' });
      }
    }, o.pingInterval);
    sock.onopen = function () {
      if (!self._subs[conn.first]) self._wsSend({ type: 'unsubscribe', channel: conn.first });
      for (var ch in self._subs) if (ch !== conn.first) self._wsSubscribe(self._subs[ch]);
    };
    sock.onmessage = function (e) {
      var m;
      conn.asked = 0;                 // anything from the server answers the ping
      if (!conn.ok) {
        conn.ok = true;
        self._wsAttempt = self._wsRefused = 0;
        self.emit('open', { transport: 'websocket' });
      }
      try { m = JSON.parse(e.data); } catch (x) { return; }
      self._wsMessage(conn, m);
    };
  };

  P._wsSend = function (m) {
    try { this._ws.sock.send(JSON.stringify(m)); } catch (e) { /* closing: onclose follows */ }
  };

  P._wsSubscribe = function (sub) {
    var m = { type: 'subscribe', channel: sub.channel, ref: 's' + sub.channel };
    if (sub.lastId != null) m.last_id = sub.lastId;
    if (sub.presence) m.presence = true;
    this._wsSend(m);
  };

  P._wsRetry = function () {
    var self = this;
    this._wsWait = setTimeout(function () { self._wsConnect(); }, this._delay(this._wsAttempt++));
  };

  // The socket closed before the server said anything: refused, or nobody there?
  P._wsFailed = function (sub) {
    var self = this, token = this._wsWait = {};
    this._probe(sub).then(function (ok) {
      if (self._wsWait !== token) return;
      self._wsWait = null;
      if (ok && ++self._wsRefused >= 2 && self._fallback('websocket refused')) return;
      self._wsRetry();
    });
  };

  P._rejectPending = function () {
    var pending = this._pending, ref;
    this._pending = {};
    for (ref in pending)
      pending[ref].reject(pushError('disconnected', 'push.js: the WebSocket closed before the publish was acknowledged'));
  };

  P._wsDown = function (conn, e) {
    this._rejectPending();
    for (var ch in this._subs) if (this._subs[ch].live) {
      this._subs[ch].live = false;
      this._subs[ch].emit('close', { channel: ch, transport: 'websocket' });
    }
    if (conn.ok) this.emit('close', { transport: 'websocket', code: e && e.code, reason: e && e.reason });
  };

  P._wsMessage = function (conn, m) {
    var sub = m.channel != null ? this._subs[m.channel] : null, p = m.ref != null && this._pending[m.ref];
    if (p) delete this._pending[m.ref];
    switch (m.type) {
      case 'message': if (sub) this._deliver(sub, m); break;
      case 'gap': if (sub) this._gap(sub, m); break;
      case 'join': case 'leave': if (sub) this._presenceEvent(sub, m); break;
      case 'subscribed':
        if (!sub) break;
        if (sub.lastId == null) sub.lastId = m.last_id;
        this._live(sub, 'websocket');
        break;
      case 'published':
        if (p) p.resolve({ channel: m.channel, id: m.id, subscribers: m.subscribers });
        break;
      case 'error':
        if (p && m.code === 'forbidden') {          // PushWebSocketPublish off: use HTTP
          this._wsPub = false;
          this._httpPublish(p.channel, p.data, p.event).then(p.resolve, p.reject);
        } else if (p) p.reject(pushError(m.code, m.message));
        else {
          var ch = typeof m.ref === 'string' && m.ref.charAt(0) === 's' ? m.ref.slice(1) : null;
          sub = ch && this._subs[ch];
          var ev = { channel: ch, code: m.code, message: m.message };
          if (sub) sub.emit('error', ev);
          this.emit('error', ev);
          // a subscription the broker could not serve: reconnect later
          if (sub && m.code === 'unavailable') conn.gone({ code: 4000, reason: 'retry' });
        }
    }
  };

  // ---- SSE, long polling, short polling: one connection per channel ---------------

  P._chanStart = function (sub) {
    sub._conn = { sub: sub, kind: this.transport, ok: false, attempt: 0, refused: 0, ctl: null, timer: null };
    this._chanConnect(sub._conn);
  };

  P._chanStop = function (sub) {
    var c = sub._conn;
    if (!c) return;
    sub._conn = null;
    clearTimeout(c.timer);
    if (c.ctl) c.ctl.abort();
  };

  P._chanSchedule = function (c, ms) {
    var self = this;
    c.timer = setTimeout(function () { self._chanConnect(c); }, ms);
  };

  // Mode of the next request: SSE without a cursor, and long polling after
  // a (re)connection, start with a short poll that answers at once (the
  // cursor, the backlog), so that nothing is missed and "open" comes quickly.
  P._chanConnect = function (c) {
    var self = this, sub = c.sub, kind = c.kind;
    if (sub._conn !== c) return;
    var mode = kind === 'sse' ? (sub.lastId != null || c.noPrime ? 'sse' : 'poll')
      : kind === 'longpoll' && !c.ok ? 'poll' : kind;
    var ctl = c.ctl = new AbortController();
    this._fetch(this._url(this.options.base, sub.channel, this._query(sub, mode)).href, {
      cache: 'no-store', signal: ctl.signal,
      headers: { Accept: mode === 'sse' ? 'text/event-stream' : 'application/json' }
    }).then(function (res) {
      var type = res.headers.get('Content-Type') || '';
      if (sub._conn !== c) return;
      if (res.ok && mode === 'sse' && type.indexOf('text/event-stream') === 0 && res.body)
        return self._sseRead(c, res);
      if (res.ok && mode !== 'sse' && type.indexOf('json') >= 0)
        return res.json().then(function (body) { self._pollAnswer(c, body, mode); });
      throw pushError(res.status === 503 ? 'unavailable' : 'refused', mode + ': HTTP ' + res.status, res.status);
    }).then(function () {
      if (sub._conn !== c) return;
      if (mode === 'sse') {                      // the server ended the stream (restart)
        self._chanDown(c);
        return self._chanSchedule(c, self._delay(c.attempt++));
      }
      self._chanSchedule(c, kind === 'poll' ? self.options.pollInterval : 0);
    }, function (e) {
      if (sub._conn !== c || self.closed) return;
      // refused: a 4xx, a 501 (e.g. HTTP/2) or a 200 that is not what was asked for
      var refused = e.code === 'refused' && (e.status < 500 || e.status === 501);
      if (refused && mode === 'poll' && kind === 'sse') {
        c.noPrime = true;                        // short polls refused: SSE without a cursor
        return self._chanSchedule(c, 0);
      }
      if (refused && mode === kind && kind !== 'poll' && ++c.refused >= (kind === 'sse' ? 1 : 2)
          && self._fallback(kind + ' refused (HTTP ' + e.status + ')')) return;
      if (!refused) c.refused = 0;
      self._chanDown(c, e);
      self._chanSchedule(c, self._delay(c.attempt++));
    });
  };

  P._chanOk = function (c) {
    if (c.ok) return;
    c.ok = true;
    c.attempt = 0;
    this.emit('open', { transport: c.kind, channel: c.sub.channel });
    this._live(c.sub, c.kind);
  };

  P._chanDown = function (c, e) {
    if (!c.ok) return;
    c.ok = c.sub.live = false;
    var ev = { channel: c.sub.channel, transport: c.kind, error: e || null };
    this._both(c.sub, 'close', ev);
  };

  P._pollAnswer = function (c, b, mode) {
    var self = this, sub = c.sub;
    if (sub._conn !== c) return;
    if (b.gap) this._gap(sub, b.gap);
    (b.messages || []).forEach(function (m) { self._deliver(sub, m); });
    if (b.last_id != null) sub.lastId = b.last_id;
    (b.presence || []).forEach(function (ev) { self._presenceEvent(sub, ev); });
    if (c.kind === 'sse') return;                // the short poll before a stream
    if (mode === c.kind) c.refused = 0;
    this._chanOk(c);
    if (mode === 'poll' && sub.presence && Date.now() - sub._pat > this.options.presenceInterval)
      this._refreshPresence(sub);
  };

  // An event stream, parsed as a browser does (lines end at CRLF, LF or CR).
  P._sseRead = function (c, res) {
    var self = this, sub = c.sub, reader = res.body.getReader(), dec = new TextDecoder(), buf = '', f = {};
    c.refused = 0;
    this._chanOk(c);
    function dispatch() {
      var m = f;
      f = {};
      if (m.data == null || sub._conn !== c) return;
      if (m.id) return self._deliver(sub, { id: m.id, event: m.event, data: m.data, time: null });
      try {   // join, leave and gap come without an id
        var body = JSON.parse(m.data);
        if (m.event === 'gap') self._gap(sub, body);
        else if (m.event === 'join' || m.event === 'leave') { body.type = m.event; self._presenceEvent(sub, body); }
      } catch (e) { /* not ours */ }
    }
    function line(s) {
      if (!s) return dispatch();
      var i = s.indexOf(':'), k = i < 0 ? s : s.slice(0, i), v = i < 0 ? '' : s.slice(i + 1);
      if (v.charAt(0) === ' ') v = v.slice(1);
      if (k === 'data') f.data = f.data == null ? v : f.data + '\n' + v;
      else if (k === 'id' || k === 'event') f[k] = v;
    }
    function pump() {
      return reader.read().then(function (r) {
        if (r.done || sub._conn !== c) return;
        buf += dec.decode(r.value, { stream: true });
        var re = /\r\n|\r|\n/g, at = 0, m;
        while ((m = re.exec(buf)) && !(m[0] === '\r' && re.lastIndex === buf.length)) {
          line(buf.slice(at, m.index));
          at = re.lastIndex;
        }
        buf = buf.slice(at);
        return pump();
      });
    }
    return pump();
  };

  return PushClient;
}));
