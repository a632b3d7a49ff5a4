// Page-side helpers of tests/integration/test_browser.py (window.T).
// Every client gets a counting WebSocket and fetch (through the options that
// push.js offers for that), and records everything it emits.
(function () {
  'use strict';
  var T = window.T = { clients: {}, logs: {}, sockets: [], requests: [] };

  class CountingWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      T.sockets.push(url);
    }
  }

  function countingFetch(url, init) {
    T.requests.push({ url: String(url), method: (init && init.method) || 'GET', t: Date.now() });
    return window.fetch(url, init);
  }

  function plain(ev) {          // JSON-safe copy (errors become their message)
    return JSON.parse(JSON.stringify(ev, function (k, v) {
      return v instanceof Error ? { code: v.code, status: v.status, message: v.message } : v;
    }));
  }

  var TYPES = ['open', 'close', 'transport', 'subscribed', 'gap', 'join', 'leave', 'presence', 'error'];

  // T.start(name, options, [{channel, opts}]): a client named name.
  T.start = function (name, options, subs) {
    var log = T.logs[name] = { messages: [], events: [] };
    var c = T.clients[name] = new PushClient(Object.assign({
      WebSocket: CountingWebSocket, fetch: countingFetch, minDelay: 100, maxDelay: 2000
    }, options || {}));
    TYPES.forEach(function (type) {
      c.on(type, function (ev) { log.events.push(Object.assign({ type: type, t: Date.now() }, plain(ev))); });
    });
    c.on('message', function (m) { log.messages.push(m); });
    (subs || []).forEach(function (s) { c.subscribe(s.channel, s.opts || {}); });
    return true;
  };

  T.live = function (name, channel) {
    var s = T.clients[name]._subs[channel];
    return !!(s && s.live);
  };

  T.messages = function (name, channel) {
    return T.logs[name].messages.filter(function (m) { return !channel || m.channel === channel; });
  };

  T.ids = function (name, channel) {
    return T.messages(name, channel).map(function (m) { return m.id; });
  };

  T.events = function (name, type) {
    return T.logs[name].events.filter(function (e) { return !type || e.type === type; });
  };

  T.publish = function (name, channel, data, opts) {
    return T.clients[name].publish(channel, data, opts).then(plain, function (e) { return { error: plain(e) }; });
  };

  T.presence = function (name, channel) {
    return T.clients[name].presence(channel);
  };
}());
