/*
 * nws.js: the NetworkWebSocket polyfill, served by nws-proxy at /nws.js.
 *
 *   var ws = new NetworkWebSocket("myChannelName");          // (name, subprotocols, options)
 *   ws.onopen = function () { ws.send("hello, everyone"); };
 *   ws.onmessage = function (ev) { console.log(ev.senderId, ev.data); };
 *   ws.onconnect = function (ev) {
 *     var peer = ev.detail.target;                            // a socket to that peer only
 *     peer.onopen = function () { peer.send("hello, you"); };
 *     peer.onmessage = function (ev) { console.log("direct", peer.id, ev.data); };
 *   };
 *   ws.ondisconnect = function (ev) { console.log("gone", ev.detail.target.id); };
 *
 * The API of the original Network Web Sockets library (lib/namedwebsockets.js), with the
 * same observable behaviour, so pages written for it work unchanged:
 *  - new NetworkWebSocket(name, subprotocols): name as the original's pattern allows; the
 *    subprotocols go to the proxy, which echoes the first (`protocol`).
 *  - Events are dispatched asynchronously, listeners first, then the on<type> handler.
 *    As in the original, each event's state change comes one turn after its cause and its
 *    dispatch two turns after that, so the order is the original's: a peer that leaves
 *    gets `closing` then `close` (3000, "Closed") and the root `disconnect` after that;
 *    peer.close() does the same with 3001 (or the code given); when the root closes,
 *    each peer gets `closing`, the root `closing`, then each peer `close` followed by the
 *    root's `disconnect` for it, then the root `close` (3000, "Closed"). As in the
 *    original, peer.close() is local: that peer stays in `peers` and in the channel.
 *  - Non-string data arrives as its JSON text; `url` is "#", `socket` the WebSocket to
 *    the proxy, `parent` the root of a peer, `id` the peer id ("" for the root until it
 *    is known), `protocol`/`extensions` those of the socket, `binaryType` "blob".
 *  - `error` is never fired for what the proxy answers to a mistake (a message to a peer
 *    that just left, a send without data): that is a `warning` event ({code, reason} in
 *    `detail`) and a console warning. `error` comes only before a socket closes.
 * What nws adds: `senderId` on message events, `peer(id)`, bytes (ArrayBuffer, typed
 * arrays, Blob) both ways, and on the root's close event the socket's own close
 * `socketCode`/`socketReason` (1006: the proxy could not be reached).
 *
 * The proxy: NetworkWebSocket.endpoint (default: the proxy this script came from, else
 * ws://localhost:9009/), or { endpoint: "ws://localhost:9010/" } as third argument. A
 * second argument that is a ws:// or wss:// URL is taken as the endpoint too (no
 * subprotocol can contain ':' or '/').
 */
(function (global) {
  "use strict";

  var CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;
  // The original polyfill's pattern: its proxy also takes '*', its polyfill never did.
  var NAME = /^[A-Za-z0-9=+._-]{1,255}$/;

  var endpoint = "ws://localhost:9009/";
  try {
    var script = global.document && global.document.currentScript;
    if (script && script.src) {
      var u = new URL(script.src);
      if (u.protocol === "http:" && /^(localhost|127\.0\.0\.1|\[::1\])$/.test(u.hostname))
        endpoint = "ws://" + u.host + "/";
    }
  } catch (e) { /* keep the default */ }

  /* Turns: the original ran each step on a 1 ms timer and each dispatch on a 2 ms one,
   * which fixes the order pages see, but real timers can swap steps on a busy machine.
   * Here turn n+1 runs its steps after every step of turn n, one macrotask per turn. */
  var turns = [], armed = false;

  function later(n, fn) {
    while (turns.length < n) turns.push([]);
    turns[n - 1].push(fn);
    if (!armed) {
      armed = true;
      setTimeout(turn, 0);
    }
  }

  function turn() {
    armed = false;
    var now = turns.shift() || [];
    for (var i = 0; i < now.length; i++) {
      try { now[i](); } catch (e) { report(e); }
    }
    if (turns.length && !armed) {
      armed = true;
      setTimeout(turn, 0);
    }
  }

  // An exception in a page's handler is reported as any event handler's would be, and
  // does not stop the others.
  function report(e) {
    if (typeof global.reportError === "function") global.reportError(e);
    else setTimeout(function () { throw e; }, 0);
  }

  function makeEvent(type, init) {
    init = init || {};
    var ev;
    if (type === "message" && typeof MessageEvent === "function")
      ev = new MessageEvent("message", { data: init.data });
    else if ("detail" in init && typeof CustomEvent === "function")
      ev = new CustomEvent(type, { detail: init.detail });
    else if (type === "close" && typeof CloseEvent === "function")
      ev = new CloseEvent("close", { code: init.code, reason: init.reason, wasClean: !!init.wasClean });
    else if (typeof Event === "function")
      ev = new Event(type);
    else
      ev = { type: type };
    Object.keys(init).forEach(function (k) {
      if (!(k in ev) || ev[k] === undefined)
        try { Object.defineProperty(ev, k, { value: init[k], enumerable: true }); } catch (e) { }
    });
    return ev;
  }

  /* What root and peer sockets share: events, constants, the socket's attributes. */
  var Base = {
    CONNECTING: CONNECTING, OPEN: OPEN, CLOSING: CLOSING, CLOSED: CLOSED,
    addEventListener: function (type, fn) {
      var l = this.__listeners[type] || (this.__listeners[type] = []);
      if (fn && l.indexOf(fn) < 0) l.push(fn);
    },
    removeEventListener: function (type, fn) {
      var l = this.__listeners[type];
      if (l && l.indexOf(fn) >= 0) l.splice(l.indexOf(fn), 1);
    },
    // Asynchronous, as the original's.
    dispatchEvent: function (ev) {
      var self = this;
      later(2, function () { self.__deliver(ev); });
      return true;
    },
    __deliver: function (ev) {
      var self = this;
      (this.__listeners[ev.type] || []).slice().forEach(function (fn) {
        try {
          if (typeof fn === "function") fn.call(self, ev);
          else if (fn && typeof fn.handleEvent === "function") fn.handleEvent(ev);
        } catch (e) { report(e); }
      });
      var handler = this["on" + ev.type];
      if (typeof handler === "function") handler.call(this, ev);
    },
    // One step: the state changes next turn, the event is dispatched two turns later;
    // then() runs right after the state change.
    __step: function (type, init, state, then) {
      var self = this;
      later(1, function () {
        if (state !== undefined) self.readyState = state;
        self.dispatchEvent(makeEvent(type, init));
        if (then) then();
      });
    },
    __closeSteps: function (code, reason, parent, extra) {
      var self = this, init = { code: code, reason: reason, wasClean: true };
      Object.keys(extra || {}).forEach(function (k) { init[k] = extra[k]; });
      this.__step("closing", null, CLOSING, function () {
        self.__step("close", init, CLOSED, function () {
          if (parent) parent.dispatchEvent(makeEvent("disconnect", { detail: { target: self } }));
        });
      });
    }
  };
  ["protocol", "extensions"].forEach(function (k) {
    Object.defineProperty(Base, k, {
      get: function () { return this.socket ? this.socket[k] : ""; }, enumerable: true
    });
  });

  function isBytes(d) {
    return (typeof ArrayBuffer !== "undefined" && (d instanceof ArrayBuffer || ArrayBuffer.isView(d))) ||
      (typeof Blob !== "undefined" && d instanceof Blob);
  }

  function toBase64(buf) {
    var b = new Uint8Array(buf), s = "";
    for (var i = 0; i < b.length; i += 0x8000)
      s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
    return btoa(s);
  }

  function fromBase64(s) {
    var bin = atob(s), b = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
    return b.buffer;
  }

  function bytesOut(sock, buf) {
    return sock.binaryType === "arraybuffer" || typeof Blob === "undefined" ? buf : new Blob([buf]);
  }

  // The data of a received frame as the original library gave it: strings as they are,
  // any other JSON value as its JSON text; bytes per binaryType.
  function dataOf(sock, msg) {
    if (msg.encoding === "base64" && typeof msg.data === "string")
      return bytesOut(sock, fromBase64(msg.data));
    return typeof msg.data === "string" ? msg.data : JSON.stringify(msg.data);
  }

  function notOpen(what) {
    return new DOMException(what + " cannot be used because it is not open", "InvalidStateError");
  }

  /* A peer: a socket whose messages go to one other peer of the channel only. */
  function PeerSocket(root, id) {
    this.__listeners = {};
    this.id = id;
    this.url = "#";
    this.socket = root.socket;
    this.parent = root;
    this.readyState = CONNECTING;
    this.bufferedAmount = 0;
    this.binaryType = "blob";
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
  }
  PeerSocket.prototype = Object.create(Base);
  PeerSocket.prototype.constructor = PeerSocket;

  PeerSocket.prototype.send = function (data) {
    if (this.readyState !== OPEN) throw notOpen("this peer socket");
    var root = this.parent, id = this.id;
    if (typeof Blob !== "undefined" && data instanceof Blob) {
      data.arrayBuffer().then(function (b) { root.__sendMessage(id, toBase64(b), true); });
      return;
    }
    if (isBytes(data)) {
      var buf = ArrayBuffer.isView(data) ?
        data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) : data;
      root.__sendMessage(id, toBase64(buf), true);
      return;
    }
    root.__sendMessage(id, data, false);
  };

  // Closes this page's socket for the peer only; the peer stays in the channel.
  PeerSocket.prototype.close = function (code, reason) {
    if (this.readyState !== OPEN) throw notOpen("this peer socket");
    this.__closeSteps(code || 3001, reason || "Closed", this.parent);
  };

  /* The root: a socket to every peer of the channel at once. */
  function NetworkWebSocket(name, subprotocols, options) {
    if (!(this instanceof NetworkWebSocket)) return new NetworkWebSocket(name, subprotocols, options);
    name = String(name);
    if (!NAME.test(name)) throw new DOMException("Invalid Service Name: " + name, "SyntaxError");
    var base = (options && options.endpoint) || NetworkWebSocket.endpoint;
    if (typeof subprotocols === "string" && /^wss?:\/\//i.test(subprotocols)) {
      base = subprotocols;
      subprotocols = undefined;
    }
    // nws.cbor would switch the proxy to CBOR, which this library does not speak.
    var protocols = subprotocols == null ? [] :
      [].concat(subprotocols).filter(function (p) { return p !== "nws.cbor"; });
    var url = String(base).replace(/\/*$/, "/") + encodeURIComponent(name) + "?bytes=base64";
    var ws = new WebSocket(url, protocols), self = this;
    ws.binaryType = "arraybuffer";

    this.__listeners = {};
    this.channel = this.name = name;
    this.id = "";
    this.url = "#";
    this.socket = ws;
    this.parent = undefined;
    this.peers = [];
    this.readyState = CONNECTING;
    this.binaryType = "blob";
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this.onconnect = this.ondisconnect = null;

    ws.onopen = function () {
      ws.send(JSON.stringify({ action: "status" }));
      self.__step("open", null, OPEN);
    };
    ws.onmessage = function (ev) { self.__receive(ev.data); };
    ws.onerror = function () { self.__step("error", null); };
    ws.onclose = function (ev) {
      self.peers.forEach(function (p) { p.__closeSteps(3000, "Closed", self); });
      self.peers = [];
      self.__closeSteps(3000, "Closed", null,
        { socketCode: ev.code, socketReason: ev.reason, wasClean: ev.wasClean });
    };
  }
  NetworkWebSocket.prototype = Object.create(Base);
  NetworkWebSocket.prototype.constructor = NetworkWebSocket;
  [NetworkWebSocket, PeerSocket].forEach(function (C) {
    C.CONNECTING = CONNECTING; C.OPEN = OPEN; C.CLOSING = CLOSING; C.CLOSED = CLOSED;
  });
  NetworkWebSocket.endpoint = endpoint;

  Object.defineProperty(NetworkWebSocket.prototype, "bufferedAmount", {
    get: function () { return this.socket ? this.socket.bufferedAmount : 0; }
  });

  // A broadcast to every other peer of the channel.
  NetworkWebSocket.prototype.send = function (data) {
    if (this.readyState !== OPEN) throw notOpen("the network web socket");
    if (isBytes(data)) this.socket.send(data);
    else this.socket.send(JSON.stringify({ action: "broadcast", data: data }));
  };

  // As the original: the root stays OPEN until the proxy has closed the socket.
  NetworkWebSocket.prototype.close = function () {
    if (this.readyState !== OPEN) throw notOpen("the network web socket");
    this.socket.close();
  };

  NetworkWebSocket.prototype.peer = function (id) {
    for (var i = 0; i < this.peers.length; i++)
      if (this.peers[i].id === id) return this.peers[i];
    return null;
  };

  NetworkWebSocket.prototype.__sendMessage = function (target, data, base64) {
    var m = { action: "message", target: target, data: data };
    if (base64) m.encoding = "base64";
    this.socket.send(JSON.stringify(m));
  };

  NetworkWebSocket.prototype.__receive = function (raw) {
    var self = this, msg, peer;
    if (typeof raw !== "string") {   // bytes from a proxy that does not name their sender
      this.__step("message", { data: bytesOut(this, raw), senderId: null });
      return;
    }
    try { msg = JSON.parse(raw); } catch (e) { return; }
    if (!msg || typeof msg !== "object") return;
    if (msg.source && (msg.action === "connect" || msg.action === "disconnect" || msg.action === "status"))
      this.id = msg.source;
    switch (msg.action) {
    case "connect":
      if (this.peer(msg.target)) return;
      peer = new PeerSocket(this, msg.target);
      this.peers.push(peer);
      // The peer opens once the connect handlers ran, so they may set peer.onopen.
      later(2, function () {
        self.__deliver(makeEvent("connect", { detail: { target: peer } }));
        peer.__step("open", null, OPEN);
      });
      break;
    case "disconnect":
      peer = this.peer(msg.target);
      if (!peer) return;
      this.peers.splice(this.peers.indexOf(peer), 1);
      peer.__closeSteps(3000, "Closed", this);
      break;
    case "broadcast":
      this.__step("message", { data: dataOf(this, msg), senderId: msg.source, peer: this.peer(msg.source) });
      break;
    case "message":
      peer = this.peer(msg.source);
      if (peer) peer.__step("message", { data: dataOf(peer, msg), senderId: msg.source, peer: peer });
      break;
    case "error":
      if (typeof console !== "undefined") console.warn("nws-proxy: " + msg.reason + " (" + msg.code + ")");
      this.__step("warning", { detail: { code: msg.code, reason: msg.reason } });
      break;
    }
  };

  global.NetworkWebSocket = NetworkWebSocket;
  if (typeof module === "object" && module && module.exports) module.exports = NetworkWebSocket;
})(typeof window !== "undefined" ? window : this);
