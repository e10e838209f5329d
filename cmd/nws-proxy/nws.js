/*
 * nws.js: the NetworkWebSocket polyfill, served by nws-proxy at /nws.js.
 *
 *   var ws = new NetworkWebSocket("myChannelName");          // or (name, "ws://localhost:9009")
 *   ws.onopen = function () { ws.send("hello, everyone"); };
 *   ws.onmessage = function (ev) { console.log(ev.senderId, ev.data); };
 *   ws.onconnect = function (ev) {
 *     var peer = ev.detail.target;                            // a socket to that peer only
 *     peer.onopen = function () { peer.send("hello, you"); };
 *     peer.onmessage = function (ev) { console.log("direct", peer.id, ev.data); };
 *   };
 *   ws.ondisconnect = function (ev) { console.log("gone", ev.detail.target.id); };
 *
 * The API of the original Network Web Sockets library: code written for it works
 * unchanged. Every on<event> property also works with addEventListener. `peers` lists the
 * peer sockets; `id` is this socket's own peer id once known. Strings travel as strings;
 * ArrayBuffer, typed arrays and Blobs as bytes; other values as JSON (received as their
 * JSON text, as the original did).
 */
(function (global) {
  "use strict";

  var CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;
  var NAME = /^[A-Za-z0-9+=*._-]{1,255}$/;

  // Loaded from a proxy (http://localhost:PORT/nws.js)? Then that proxy is the default.
  var defaultProxy = "ws://localhost:9009";
  try {
    var script = global.document && global.document.currentScript;
    if (script && script.src) {
      var u = new URL(script.src);
      if (u.protocol === "http:" && /^(localhost|127\.0\.0\.1|\[::1\])$/.test(u.hostname))
        defaultProxy = "ws://" + u.host;
    }
  } catch (e) { /* keep the default */ }

  function makeEvent(type, init) {
    init = init || {};
    var ev;
    if (type === "message" && typeof MessageEvent === "function") {
      ev = new MessageEvent("message", { data: init.data });
    } else if ("detail" in init && typeof CustomEvent === "function") {
      ev = new CustomEvent(type, { detail: init.detail });
    } else if (type === "close" && typeof CloseEvent === "function") {
      ev = new CloseEvent("close", { code: init.code, reason: init.reason, wasClean: !!init.wasClean });
    } else if (typeof Event === "function") {
      ev = new Event(type);
    } else {
      ev = { type: type };
    }
    Object.keys(init).forEach(function (k) {
      if (!(k in ev) || ev[k] === undefined)
        try { Object.defineProperty(ev, k, { value: init[k], enumerable: true }); } catch (e) { }
    });
    return ev;
  }

  /* Events: on<type> handlers and addEventListener, dispatched on the next tick like the
   * events of a real WebSocket. */
  var Emitter = {
    addEventListener: function (type, fn) {
      var l = this.__listeners[type] || (this.__listeners[type] = []);
      if (fn && l.indexOf(fn) < 0) l.push(fn);
    },
    removeEventListener: function (type, fn) {
      var l = this.__listeners[type];
      if (l && l.indexOf(fn) >= 0) l.splice(l.indexOf(fn), 1);
    },
    dispatchEvent: function (ev) {
      var self = this;
      var handler = this["on" + ev.type];
      if (typeof handler === "function") handler.call(self, ev);
      (this.__listeners[ev.type] || []).slice().forEach(function (fn) {
        if (typeof fn === "function") fn.call(self, ev);
        else if (fn && typeof fn.handleEvent === "function") fn.handleEvent(ev);
      });
      return true;
    },
    __fire: function (type, init, then) {
      var self = this;
      setTimeout(function () {
        self.dispatchEvent(makeEvent(type, init));
        if (then) then();
      }, 0);
    }
  };

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
  // bytes per binaryType, any other JSON value as its JSON text.
  function dataOf(sock, msg) {
    if (msg.encoding === "base64" && typeof msg.data === "string")
      return bytesOut(sock, fromBase64(msg.data));
    return typeof msg.data === "string" ? msg.data : JSON.stringify(msg.data);
  }

  /* A peer: a socket whose messages go to one other peer of the channel only. */
  function PeerSocket(root, id) {
    this.__listeners = {};
    this.__root = root;
    this.id = id;
    this.url = "#";
    this.protocol = "";
    this.extensions = "";
    this.readyState = CONNECTING;
    this.bufferedAmount = 0;
    this.binaryType = root.binaryType;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
  }
  PeerSocket.prototype = Object.create(Emitter);
  PeerSocket.prototype.CONNECTING = PeerSocket.CONNECTING = CONNECTING;
  PeerSocket.prototype.OPEN = PeerSocket.OPEN = OPEN;
  PeerSocket.prototype.CLOSING = PeerSocket.CLOSING = CLOSING;
  PeerSocket.prototype.CLOSED = PeerSocket.CLOSED = CLOSED;

  PeerSocket.prototype.send = function (data) {
    if (this.readyState !== OPEN)
      throw new DOMException("this peer socket is not open", "InvalidStateError");
    var root = this.__root, id = this.id;
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

  // Closes this peer's socket on our side only (the channel and the peer stay).
  PeerSocket.prototype.close = function (code, reason) {
    if (this.readyState >= CLOSING) return;
    this.__end(code || 1000, reason || "closed", false);
  };

  PeerSocket.prototype.__end = function (code, reason, gone) {
    var self = this, root = this.__root;
    this.readyState = CLOSING;
    root.__forget(this);
    this.__fire("close", { code: code, reason: reason, wasClean: true }, function () {
      self.readyState = CLOSED;
      if (gone) root.__fire("disconnect", { detail: { target: self } });
    });
  };

  /* The channel: a socket to every peer of the channel at once. */
  function NetworkWebSocket(name, proxyURL) {
    if (!(this instanceof NetworkWebSocket)) return new NetworkWebSocket(name, proxyURL);
    if (!NAME.test(String(name)))
      throw new SyntaxError("a channel name is 1 to 255 of A-Z a-z 0-9 + = * . _ -");
    var self = this;
    this.__listeners = {};
    this.channel = this.name = String(name);
    this.url = (proxyURL || defaultProxy).replace(/\/+$/, "") + "/" + encodeURIComponent(this.channel);
    this.id = null;
    this.peers = [];
    this.readyState = CONNECTING;
    this.protocol = "";
    this.extensions = "";
    this.binaryType = "blob";
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this.onconnect = this.ondisconnect = null;

    var ws = this.__ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    ws.onopen = function () {
      self.readyState = OPEN;
      ws.send(JSON.stringify({ action: "status" }));
      self.dispatchEvent(makeEvent("open"));
    };
    ws.onmessage = function (ev) { self.__receive(ev.data); };
    ws.onerror = function () { self.dispatchEvent(makeEvent("error")); };
    ws.onclose = function (ev) {
      self.peers.slice().forEach(function (p) { p.__end(1001, "channel closed", true); });
      self.readyState = CLOSED;
      self.__fire("close", { code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
    };
  }
  NetworkWebSocket.prototype = Object.create(Emitter);
  NetworkWebSocket.prototype.constructor = NetworkWebSocket;
  NetworkWebSocket.prototype.CONNECTING = NetworkWebSocket.CONNECTING = CONNECTING;
  NetworkWebSocket.prototype.OPEN = NetworkWebSocket.OPEN = OPEN;
  NetworkWebSocket.prototype.CLOSING = NetworkWebSocket.CLOSING = CLOSING;
  NetworkWebSocket.prototype.CLOSED = NetworkWebSocket.CLOSED = CLOSED;

  Object.defineProperty(NetworkWebSocket.prototype, "bufferedAmount", {
    get: function () { return this.__ws ? this.__ws.bufferedAmount : 0; }
  });

  // A broadcast to every other peer of the channel.
  NetworkWebSocket.prototype.send = function (data) {
    if (this.readyState !== OPEN)
      throw new DOMException("the network web socket is not open", "InvalidStateError");
    if (isBytes(data)) this.__ws.send(data);
    else this.__ws.send(JSON.stringify({ action: "broadcast", data: data }));
  };

  NetworkWebSocket.prototype.close = function (code, reason) {
    if (this.readyState >= CLOSING) return;
    this.readyState = CLOSING;
    this.__ws.close(code || 1000, reason);
  };

  NetworkWebSocket.prototype.peer = function (id) {
    for (var i = 0; i < this.peers.length; i++)
      if (this.peers[i].id === id) return this.peers[i];
    return null;
  };

  NetworkWebSocket.prototype.__sendMessage = function (target, data, base64) {
    var m = { action: "message", target: target, data: data };
    if (base64) m.encoding = "base64";
    this.__ws.send(JSON.stringify(m));
  };

  NetworkWebSocket.prototype.__forget = function (peer) {
    var i = this.peers.indexOf(peer);
    if (i >= 0) this.peers.splice(i, 1);
  };

  NetworkWebSocket.prototype.__receive = function (raw) {
    var self = this, msg, peer;
    if (typeof raw !== "string") {   // a broadcast of bytes
      this.dispatchEvent(makeEvent("message", { data: bytesOut(this, raw), senderId: null }));
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
      this.dispatchEvent(makeEvent("connect", { detail: { target: peer } }));
      // After the connect handlers ran, so a handler may set peer.onopen.
      peer.__fire("open", {}, null);
      peer.readyState = OPEN;
      break;
    case "disconnect":
      peer = this.peer(msg.target);
      if (peer) peer.__end(1001, "peer left", true);
      break;
    case "broadcast":
      peer = this.peer(msg.source);
      this.dispatchEvent(makeEvent("message", { data: dataOf(this, msg), senderId: msg.source, peer: peer }));
      break;
    case "message":
      peer = this.peer(msg.source);
      if (peer) peer.dispatchEvent(makeEvent("message", { data: dataOf(peer, msg), senderId: msg.source, peer: peer }));
      break;
    case "error":
      self.dispatchEvent(makeEvent("error", { detail: { code: msg.code, reason: msg.reason } }));
      break;
    }
  };

  global.NetworkWebSocket = NetworkWebSocket;
  if (typeof module === "object" && module && module.exports) module.exports = NetworkWebSocket;
})(typeof window !== "undefined" ? window : this);
