// The mod_push demo: a live chat on push.js (GET /push.js, see docs/client.md).
//
// Rooms are channels: the room of the URL (#lobby by default, /#room for another),
// subscribed with lastId 0 so that the channel's history is shown on join, and
// with presence: true for the list of people in the room. A message is the
// JSON text {"from": nick, "text": text}; anything else (curl, pushctl) is shown
// as it is. Publishing goes over the WebSocket, or POST /pub/<room> without one.
// ?transport=sse (or websocket, longpoll, poll; a comma list) forces transports.
(function () {
  'use strict';

  var ROOM = /^[A-Za-z0-9_.:@~-]{1,64}$/;
  var KEY_NICK = 'mod_push.chat.nick';
  var KEY_ROOMS = 'mod_push.chat.rooms';
  var MAX_ROWS = 500;
  var $ = function (id) { return document.getElementById(id); };

  var params = new URLSearchParams(location.search);
  var transports = (params.get('transport') || '').split(',').filter(Boolean);

  var chat = window.chat = { client: null, sub: null, room: null, nick: null };

  // ---- small things ------------------------------------------------------------

  function store(key, value) {
    try {
      if (value === undefined) return JSON.parse(localStorage.getItem(key));
      localStorage.setItem(key, JSON.stringify(value));
    } catch (e) { return null; }
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) % 360;
    return h;
  }

  function avatar(name) {
    var a = el('span', 'avatar', (Array.from(name)[0] || '?').toUpperCase());
    a.style.background = 'hsl(' + hue(name) + ' 55% 52%)';
    a.setAttribute('aria-hidden', 'true');
    return a;
  }

  function clock(t) {
    return t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function roomFromUrl() {
    var h = decodeURIComponent(location.hash.slice(1));
    var r = h || params.get('room') || params.get('channel') || 'lobby';
    return ROOM.test(r) ? r : 'lobby';
  }

  // ---- rooms -------------------------------------------------------------------

  function rooms() {
    var list = store(KEY_ROOMS);
    if (!Array.isArray(list)) list = ['lobby', 'demo'];
    return list.filter(function (r) { return ROOM.test(r); });
  }

  function renderRooms() {
    var ul = $('rooms');
    ul.textContent = '';
    rooms().forEach(function (r) {
      var li = el('li');
      var a = el('a', r === chat.room ? 'room active' : 'room');
      a.href = '#' + r;
      a.appendChild(el('span', 'hash', '#'));
      a.appendChild(document.createTextNode(r));
      if (r === chat.room) a.setAttribute('aria-current', 'page');
      li.appendChild(a);
      ul.appendChild(li);
    });
  }

  function join(room) {
    if (!ROOM.test(room) || (room === chat.room && chat.sub)) return;
    var list = rooms();
    if (list.indexOf(room) < 0) { list.push(room); store(KEY_ROOMS, list.slice(-12)); }
    var old = chat.sub;
    chat.room = room;
    if (location.hash.slice(1) !== room) history.replaceState(null, '', '#' + room);
    $('room-name').textContent = room;
    $('empty-room').textContent = '#' + room;
    $('compose-input').placeholder = 'Message #' + room;
    document.title = '#' + room + ' · mod_push chat';
    $('messages').textContent = '';
    $('empty').hidden = false;
    renderPeople([]);
    renderRooms();
    closeDrawer();
    if (!chat.client) return;
    // Subscribe to the new room first: the socket stays open for it.
    chat.sub = chat.client.subscribe(room, { lastId: 0, presence: true });
    chat.sub.on('message', onMessage)
      .on('presence', function (ev) { renderPeople(ev.members); })
      .on('join', function (ev) { if (ev.identity !== chat.nick) notice(ev.identity + ' joined'); })
      .on('leave', function (ev) { if (ev.identity !== chat.nick) notice(ev.identity + ' left'); })
      .on('gap', function (ev) {
        notice(ev.reason === 'lost' ? 'the server lost older messages' : 'older messages are no longer kept');
      });
    if (old) old.unsubscribe();
    status();
  }

  // ---- messages ----------------------------------------------------------------

  function atBottom() {
    var s = $('scroller');
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function append(li, stick) {
    var ol = $('messages');
    ol.appendChild(li);
    while (ol.children.length > MAX_ROWS) ol.removeChild(ol.firstChild);
    $('empty').hidden = true;
    if (stick) $('scroller').scrollTop = $('scroller').scrollHeight;
  }

  function onMessage(m) {
    var from = null, text = m.data;
    try {
      var j = JSON.parse(m.data);
      if (j && typeof j.text === 'string') { text = j.text; from = typeof j.from === 'string' ? j.from : null; }
    } catch (e) { /* plain text from another publisher */ }
    var who = from || m.event || 'server';
    var mine = from != null && from === chat.nick;
    var stick = atBottom() || mine;
    var li = el('li', 'msg' + (mine ? ' mine' : '') + (from == null ? ' ext' : ''));
    li.dataset.id = m.id;
    var prev = $('messages').lastElementChild;
    if (prev && prev.classList.contains('msg') && prev.dataset.who === who) li.classList.add('cont');
    li.dataset.who = who;
    li.appendChild(avatar(who));
    var body = el('div', 'body');
    var meta = el('div', 'meta');
    meta.appendChild(el('span', 'who', who));
    var t = el('time', 'time', clock(m.time ? new Date(m.time / 1000) : new Date()));
    meta.appendChild(t);
    body.appendChild(meta);
    body.appendChild(el('div', 'text', text));
    li.appendChild(body);
    append(li, stick);
  }

  function notice(text) {
    append(el('li', 'notice', text), atBottom());
  }

  // ---- people ------------------------------------------------------------------

  function renderPeople(members) {
    var ul = $('people');
    ul.textContent = '';
    members.forEach(function (m) {
      var li = el('li', m.identity === chat.nick ? 'person me' : 'person');
      li.dataset.name = m.identity;
      li.appendChild(avatar(m.identity));
      li.appendChild(el('span', 'name', m.identity));
      if (m.identity === chat.nick) li.appendChild(el('span', 'you', 'you'));
      ul.appendChild(li);
    });
    $('people-count').textContent = members.length;
    $('people-count-chip').textContent = members.length;
  }

  // ---- connection status -------------------------------------------------------

  function status() {
    var c = chat.client, live = chat.sub && chat.sub.live;
    var s = $('status');
    s.dataset.state = live ? 'live' : !c ? 'offline' : c.transport ? 'reconnecting' : 'connecting';
    s.textContent = live ? 'live' : !c ? 'offline' : c.transport ? 'reconnecting…' : 'connecting…';
    s.title = c && c.transport ? 'push.js transport: ' + c.transport : '';
    $('transport').textContent = c && c.transport ? 'push.js over ' + c.transport : 'push.js';
  }

  // ---- the client ----------------------------------------------------------------

  function connect() {
    if (chat.client) chat.client.close();
    var opts = { name: chat.nick };
    if (transports.length) opts.transports = transports;
    var c = chat.client = new PushClient(opts);
    ['open', 'close', 'transport', 'subscribed'].forEach(function (t) { c.on(t, status); });
    c.on('close', function () { setTimeout(status); });
    var room = chat.room || roomFromUrl();
    chat.sub = null;
    chat.room = null;
    join(room);
  }

  function send(text) {
    var room = chat.room;
    chat.client.publish(room, { from: chat.nick, text: text }).catch(function (e) {
      notice('not sent (' + (e.code || 'error') + '): ' + text);
    });
  }

  function setNick(nick) {
    nick = nick.trim().slice(0, 32);
    if (!nick || nick === chat.nick) return;
    chat.nick = nick;
    store(KEY_NICK, nick);
    $('me').textContent = '';
    $('me').appendChild(avatar(nick));
    $('me').appendChild(el('span', 'name', nick));
    connect();                // a new presence identity: a new connection
  }

  function askNick() {
    var d = $('nick-dialog');
    $('nick-input').value = chat.nick || '';
    if (d.showModal) d.showModal(); else d.setAttribute('open', '');
    $('nick-input').focus();
  }

  // ---- the drawer (narrow screens) ---------------------------------------------

  function openDrawer() {
    document.body.classList.add('drawer');
    $('backdrop').hidden = false;
    $('menu').setAttribute('aria-expanded', 'true');
  }

  function closeDrawer() {
    document.body.classList.remove('drawer');
    $('backdrop').hidden = true;
    $('menu').setAttribute('aria-expanded', 'false');
  }

  // ---- wiring --------------------------------------------------------------------

  $('compose').addEventListener('submit', function (e) {
    e.preventDefault();
    var input = $('compose-input'), text = input.value.trim();
    if (!text || !chat.client) return;
    input.value = '';
    send(text);
  });
  $('room-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var input = $('room-input'), r = input.value.trim().replace(/^#/, '');
    if (!ROOM.test(r)) { input.setCustomValidity('letters, digits and _ . : @ ~ -'); input.reportValidity(); return; }
    input.value = '';
    join(r);
  });
  $('room-input').addEventListener('input', function () { this.setCustomValidity(''); });
  $('nick-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var nick = $('nick-input').value.trim();
    if (!nick) return;
    var d = $('nick-dialog');
    if (d.close) d.close(); else d.removeAttribute('open');
    setNick(nick);
  });
  $('nick-dialog').addEventListener('cancel', function (e) { if (!chat.nick) e.preventDefault(); });
  $('me').addEventListener('click', askNick);
  $('menu').addEventListener('click', function () {
    if (document.body.classList.contains('drawer')) closeDrawer(); else openDrawer();
  });
  $('people-chip').addEventListener('click', openDrawer);
  $('backdrop').addEventListener('click', closeDrawer);
  window.addEventListener('hashchange', function () { join(roomFromUrl()); });

  chat.room = null;
  join(roomFromUrl());
  var nick = store(KEY_NICK);
  if (typeof nick === 'string' && nick.trim()) setNick(nick); else askNick();
  status();
}());
