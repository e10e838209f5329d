/* The nws test console: join channels through this proxy, watch peers come and go, send
 * broadcasts and direct messages, and see every event with its time and sender. It speaks
 * the proxy's WebSocket protocol directly (with ?events=link for link status, and
 * ?bytes=base64 so broadcasts of bytes name their sender), so the log shows exactly what
 * a program would receive. */
(function () {
  "use strict";
  var NAME = /^[A-Za-z0-9+=*._-]{1,255}$/;
  var LOG_MAX = 2000;
  var base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  var channels = {}, current = null;
  var $ = function (id) { return document.getElementById(id); };

  $("proxy").textContent = location.host;
  $("endpoint").textContent = base + "/name";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function short(id) { return id ? String(id).slice(0, 8) : ""; }
  function hue(id) {
    var h = 0;
    for (var i = 0; i < String(id).length; i++) h = (h * 31 + String(id).charCodeAt(i)) % 360;
    return h;
  }
  function whoEl(id, label) {
    var s = el("span", "who", label || short(id));
    if (id) { s.style.color = "hsl(" + hue(id) + " 65% 45%)"; s.title = id; }
    return s;
  }
  function stamp() {
    var d = new Date();
    return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }
  function show(data) {
    if (data instanceof ArrayBuffer) {
      var b = new Uint8Array(data), hex = [];
      for (var i = 0; i < Math.min(b.length, 32); i++) hex.push(b[i].toString(16).padStart(2, "0"));
      return "(" + b.length + " bytes) " + hex.join(" ") + (b.length > 32 ? " …" : "");
    }
    return typeof data === "string" ? data : JSON.stringify(data);
  }

  function Channel(name) {
    this.name = name;
    this.id = null;
    this.peers = {};
    this.links = {};
    this.entries = [];
    this.unread = 0;
    this.state = "connecting";
    this.li = el("li");
    this.dot = el("span", "dot");
    this.badge = el("span", "badge");
    this.li.append(this.dot, el("span", "", name), this.badge);
    this.li.dataset.channel = name;
    this.li.onclick = select.bind(null, this);
    this.connect();
  }

  Channel.prototype.connect = function () {
    var self = this;
    var ws = this.ws = new WebSocket(base + "/" + encodeURIComponent(this.name) + "?events=link&bytes=base64");
    ws.binaryType = "arraybuffer";
    ws.onopen = function () {
      self.setState("open");
      ws.send(JSON.stringify({ action: "status" }));
      self.log("info", null, "joined; waiting for peers");
    };
    ws.onmessage = function (ev) { self.receive(ev.data); };
    ws.onclose = function (ev) {
      self.setState("closed");
      Object.keys(self.peers).forEach(function (p) { self.peerGone(p, true); });
      self.log("info", null, "closed" + (ev.code ? " (" + ev.code + (ev.reason ? " " + ev.reason : "") + ")" : "") +
        (ev.code === 1006 ? ": is nws-proxy still running?" : ""));
    };
  };

  Channel.prototype.setState = function (s) {
    this.state = s;
    this.dot.dataset.state = s;
    if (this === current) { $("state").dataset.state = s; $("state").textContent = s; renderCompose(); }
  };

  Channel.prototype.receive = function (raw) {
    if (typeof raw !== "string") { this.log("broadcast", null, show(raw), "(binary message)"); return; }
    var m;
    try { m = JSON.parse(raw); } catch (e) { this.log("error", null, "not JSON: " + raw); return; }
    switch (m.action) {
    case "status":
      this.id = m.source; if (this === current) $("my-id").textContent = m.source; break;
    case "connect":
      if (!this.id && m.source) { this.id = m.source; if (this === current) $("my-id").textContent = m.source; }
      if (!this.peers[m.target]) { this.peers[m.target] = { id: m.target, at: Date.now() }; this.log("connect", m.target, "joined the channel", raw); }
      if (this === current) renderPeers(m.target);
      break;
    case "disconnect":
      this.peerGone(m.target, false, raw); break;
    case "broadcast":
      this.log("broadcast", m.source, show(m.encoding === "base64" ? "(base64) " + m.data : m.data), raw); break;
    case "message":
      this.log("message", m.source, show(m.encoding === "base64" ? "(base64) " + m.data : m.data), raw, "to you"); break;
    case "linked":
      this.links[m.node] = m.address || "";
      this.log("link", null, "encrypted link up to node " + short(m.node) + (m.address ? " at " + m.address : ""), raw);
      setNet("ok"); if (this === current) renderLinks(); break;
    case "unlinked":
      delete this.links[m.node];
      this.log("link", null, "link down to node " + short(m.node), raw);
      if (this === current) renderLinks(); break;
    case "advertised":
      setNet("ok"); this.log("link", null, "published on the network", raw); break;
    case "error":
      if (m.code === 69) setNet("down");
      this.log("error", null, (m.reason || "error") + (m.code ? " (" + m.code + ")" : ""), raw); break;
    default:
      this.log("info", null, raw);
    }
  };

  Channel.prototype.peerGone = function (id, quiet, raw) {
    if (!this.peers[id]) return;
    delete this.peers[id];
    if (!quiet) this.log("disconnect", id, "left the channel", raw);
    if (this === current) renderPeers();
  };

  Channel.prototype.log = function (kind, who, text, raw, note) {
    var e = { t: stamp(), kind: kind, who: who, text: text, raw: raw, note: note };
    this.entries.push(e);
    if (this.entries.length > LOG_MAX) this.entries.shift();
    if (this === current) appendEntry(e); else if (kind !== "info") { this.unread++; this.badge.textContent = this.unread; }
  };

  Channel.prototype.send = function (target, text) {
    var data = text, m;
    if (target) m = { action: "message", target: target, data: data };
    else m = { action: "broadcast", data: data };
    this.ws.send(JSON.stringify(m));
    this.log("sent", this.id, text, JSON.stringify(m), target ? "to " + short(target) : "to everyone");
  };

  function appendEntry(e) {
    var log = $("log");
    var stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 30;
    var li = el("li");
    li.dataset.kind = e.kind;
    var who = e.kind === "sent" ? whoEl(e.who, "you") : e.who ? whoEl(e.who) : el("span", "who", "");
    var data = el("span", "data", e.text);
    if (e.note) data.append(el("span", "note", "  — " + e.note));
    if (e.raw) data.append(el("span", "raw", e.raw));
    li.append(el("time", "", e.t), el("span", "kind " + e.kind, e.kind === "link" ? "link" : e.kind), who, data);
    log.append(li);
    while (log.children.length > LOG_MAX) log.firstChild.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function renderPeers(fresh) {
    var ch = current, ul = $("peers"), sel = $("target-select"), keep = sel.value;
    ul.textContent = "";
    var ids = Object.keys(ch.peers).sort(function (a, b) { return ch.peers[a].at - ch.peers[b].at; });
    $("peer-count").textContent = ids.length;
    if (!ids.length) ul.append(el("li", "empty", "Nobody else yet."));
    while (sel.options.length > 1) sel.remove(1);
    ids.forEach(function (id) {
      var li = el("li", id === fresh ? "new" : "");
      li.dataset.peer = id;
      var b = el("button", "secondary", "message");
      b.type = "button";
      b.title = "send a direct message to " + id;
      b.onclick = function () { sel.value = id; $("message-input").focus(); };
      li.append(el("span", "dot"), whoEl(id, id), b);
      li.firstChild.dataset.state = "open";
      ul.append(li);
      var o = el("option", "", "only " + short(id));
      o.value = id;
      sel.append(o);
    });
    sel.value = ch.peers[keep] ? keep : "";
  }

  function renderLinks() {
    var ul = $("links"), nodes = Object.keys(current.links);
    ul.textContent = "";
    if (!nodes.length) ul.append(el("li", "empty", "No encrypted link yet."));
    nodes.forEach(function (n) { ul.append(el("li", "", "encrypted to " + short(n) + (current.links[n] ? " at " + current.links[n] : ""))); });
  }

  function renderCompose() {
    $("send-btn").disabled = !current || current.state !== "open";
  }

  function setNet(state) {
    var n = $("net");
    n.dataset.state = state;
    n.querySelector("b").textContent = state === "ok" ? "joined" : "unreachable (no avahi-daemon): this machine only";
  }

  function select(ch) {
    if (current) current.li.classList.remove("active");
    current = ch;
    $("empty").hidden = !!ch;
    $("view").hidden = !ch;
    if (!ch) return;
    ch.li.classList.add("active");
    ch.unread = 0;
    ch.badge.textContent = "";
    $("view-name").textContent = ch.name;
    $("my-id").textContent = ch.id || "…";
    $("state").dataset.state = ch.state;
    $("state").textContent = ch.state;
    $("log").textContent = "";
    ch.entries.forEach(appendEntry);
    renderPeers();
    renderLinks();
    renderCompose();
    location.hash = "join=" + encodeURIComponent(ch.name);
    $("message-input").focus();
  }

  function renderChannels() {
    var ul = $("channels");
    ul.textContent = "";
    var names = Object.keys(channels);
    if (!names.length) ul.append(el("li", "empty", "No channel yet."));
    names.forEach(function (n) { ul.append(channels[n].li); });
  }

  function join(name) {
    $("join-error").hidden = true;
    if (!NAME.test(name)) {
      $("join-error").textContent = "A channel name is 1 to 255 characters of A–Z a–z 0–9 + = * . _ -";
      $("join-error").hidden = false;
      return;
    }
    if (!channels[name]) channels[name] = new Channel(name);
    renderChannels();
    select(channels[name]);
  }

  $("join").onsubmit = function (ev) {
    ev.preventDefault();
    join($("channel-input").value.trim());
    $("channel-input").value = "";
  };
  $("random-btn").onclick = function () {
    var b = new Uint8Array(18);
    crypto.getRandomValues(b);
    $("channel-input").value = btoa(String.fromCharCode.apply(null, b)).replace(/\//g, "_");
    $("channel-input").select();
  };
  $("leave-btn").onclick = function () {
    var ch = current;
    if (!ch) return;
    ch.ws.close(1000, "left");
    delete channels[ch.name];
    renderChannels();
    var rest = Object.keys(channels);
    select(rest.length ? channels[rest[0]] : null);
    if (!rest.length) history.replaceState(null, "", location.pathname);
  };
  $("compose").onsubmit = function (ev) {
    ev.preventDefault();
    var text = $("message-input").value;
    if (!current || current.state !== "open" || !text) return;
    var target = $("target-select").value;
    if (target && !current.peers[target]) { current.log("error", null, "that peer has left"); return; }
    current.send(target, text);
    $("message-input").value = "";
  };
  $("message-input").onkeydown = function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("compose").requestSubmit(); }
  };
  $("show-raw").onchange = function () { $("log").classList.toggle("raw", this.checked); };
  $("clear-btn").onclick = function () { if (current) { current.entries = []; $("log").textContent = ""; } };

  // #join=a,b joins those channels at once (links to the console can name a channel).
  var m = /(?:^#|&)join=([^&]*)/.exec(location.hash);
  if (m) decodeURIComponent(m[1]).split(",").filter(Boolean).forEach(join);
})();
