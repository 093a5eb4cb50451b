/* SupportRouter live-chat widget. Plain JavaScript, no dependencies.
 *
 * Load with <script src="/chat/widget.js"></script>; it builds the chat inside #sr-chat
 * (created at the end of <body> when the page has none). Message text is only ever set
 * with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var STORAGE_KEY = "supportrouter.chat.session";
  var MAX_TEXT = 4000;
  var RENEW_MS = 60 * 60 * 1000;
  var script = document.currentScript;
  var base = script && script.src ? new URL(script.src, location.href) : new URL(location.href);
  var HTTP_BASE = base.origin;
  var WS_BASE = (base.protocol === "https:" ? "wss://" : "ws://") + base.host;

  // --- storage (private browsing may refuse localStorage: fall back to memory) -----------
  var memoryToken = null;
  function loadToken() {
    try { return localStorage.getItem(STORAGE_KEY); } catch (e) { return memoryToken; }
  }
  function saveToken(token) {
    memoryToken = token;
    try { if (token) localStorage.setItem(STORAGE_KEY, token); else localStorage.removeItem(STORAGE_KEY); } catch (e) { /* memory only */ }
  }

  // --- DOM helpers -----------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  var CSS = [
    "#sr-chat{font:15px/1.45 system-ui,-apple-system,'Segoe UI','PingFang SC','Microsoft YaHei',sans-serif;color:#1f2933}",
    "#sr-chat .sr-box{display:flex;flex-direction:column;max-width:28rem;height:min(32rem,85vh);border:1px solid #cbd2d9;border-radius:12px;background:#fff;overflow:hidden}",
    "#sr-chat .sr-head{display:flex;justify-content:space-between;align-items:center;gap:.5rem;padding:.6rem .9rem;background:#0b5cad;color:#fff}",
    "#sr-chat .sr-title{font-weight:600;margin:0;font-size:1rem}",
    "#sr-chat .sr-state{font-size:.8rem;display:flex;align-items:center;gap:.35rem}",
    "#sr-chat .sr-state::before{content:'';width:.55rem;height:.55rem;border-radius:50%;background:#f5b400}",
    "#sr-chat .sr-state.sr-connected::before{background:#3ccf6e}",
    "#sr-chat #sr-chat-messages{flex:1;overflow-y:auto;padding:.75rem;display:flex;flex-direction:column;gap:.5rem;background:#f5f7fa}",
    "#sr-chat .sr-msg{max-width:85%;padding:.45rem .7rem;border-radius:10px;word-wrap:break-word}",
    "#sr-chat .sr-in{align-self:flex-end;background:#0b5cad;color:#fff}",
    "#sr-chat .sr-out{align-self:flex-start;background:#fff;border:1px solid #d9e2ec}",
    "#sr-chat .sr-kind-acknowledgement{background:#eef2f7;font-size:.9em}",
    "#sr-chat .sr-meta{font-size:.75rem;opacity:.8;margin-bottom:.15rem}",
    "#sr-chat .sr-text{white-space:pre-wrap;margin:0}",
    "#sr-chat .sr-foot{font-size:.75rem;opacity:.85;margin-top:.2rem}",
    "#sr-chat .sr-pending{opacity:.7}",
    "#sr-chat .sr-failed{background:#fff1f0;color:#8a1c1c;border:1px solid #e5a1a1}",
    "#sr-chat .sr-foot button{font:inherit;margin-left:.4rem;padding:.1rem .45rem;border:1px solid currentColor;border-radius:6px;background:transparent;color:inherit;cursor:pointer}",
    "#sr-chat .sr-notice{margin:0;padding:.4rem .8rem;background:#fff4e5;color:#7a4100;font-size:.85rem}",
    "#sr-chat .sr-form{display:flex;gap:.5rem;padding:.6rem;border-top:1px solid #d9e2ec}",
    "#sr-chat textarea{flex:1;resize:none;font:inherit;padding:.4rem .5rem;border:1px solid #9aa5b1;border-radius:8px}",
    "#sr-chat #sr-chat-send{font:inherit;padding:0 .9rem;border:0;border-radius:8px;background:#0b5cad;color:#fff;cursor:pointer}",
    "#sr-chat :focus-visible{outline:3px solid #f5b400;outline-offset:1px}",
    "#sr-chat .sr-sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}"
  ].join("\n");

  // --- build the UI ----------------------------------------------------------------------
  var root = document.getElementById("sr-chat");
  if (!root) {
    root = el("div", { id: "sr-chat" });
    document.body.appendChild(root);
  }
  document.head.appendChild(el("style", { text: CSS }));

  var statusEl = el("span", { id: "sr-chat-status", text: "connecting" });
  var statusZh = el("span", { lang: "zh", text: "正在连接" });
  var stateBox = el("span", { class: "sr-state", role: "status" }, [statusZh, document.createTextNode(" / "), statusEl]);
  var list = el("div", { id: "sr-chat-messages", role: "log", "aria-live": "polite", "aria-label": "聊天记录 / Chat messages", tabindex: "0" });
  var notice = el("p", { class: "sr-notice", role: "alert" });
  notice.hidden = true;
  var input = el("textarea", {
    id: "sr-chat-input", rows: "2", maxlength: String(MAX_TEXT), autocomplete: "off",
    placeholder: "输入消息，回车发送 / Type a message, Enter to send"
  });
  var sendBtn = el("button", { id: "sr-chat-send", type: "submit", text: "发送 / Send" });
  var form = el("form", { class: "sr-form" }, [
    el("label", { for: "sr-chat-input", class: "sr-sr-only", text: "消息 / Message" }), input, sendBtn
  ]);
  root.appendChild(el("section", { class: "sr-box", "aria-label": "在线客服 / Live support" }, [
    el("div", { class: "sr-head" }, [el("h2", { class: "sr-title", text: "在线客服 / Live support" }), stateBox]),
    list, notice, form
  ]));

  function setStatus(state) {
    var zh = { connected: "已连接", reconnecting: "正在重新连接", connecting: "正在连接" };
    statusEl.textContent = state;
    statusZh.textContent = zh[state] || "";
    stateBox.className = "sr-state" + (state === "connected" ? " sr-connected" : "");
    root.setAttribute("data-state", state);
  }

  function showNotice(text) {
    notice.textContent = text || "";
    notice.hidden = !text;
  }

  // --- messages --------------------------------------------------------------------------
  var pending = [];          // own messages not yet accepted: {cid, text, state, error, retry, el}
  var inflight = [];         // client ids sent on the current socket, awaiting accepted/error, in order
  var live = new Map();      // id -> message shown from a live frame, kept until a history contains it

  function timeOf(iso) {
    var d = iso ? new Date(iso) : null;
    return d && !isNaN(d) ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  }

  function findById(id) {
    var want = String(id);
    for (var i = 0; i < list.children.length; i++) {
      if (list.children[i].getAttribute("data-id") === want) return list.children[i];
    }
    return null;
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  }
  function scrollDown() { list.scrollTop = list.scrollHeight; }

  // Fill `node` (a new or reused .sr-msg element) with a stored message.
  function renderMessage(m, node) {
    var out = m.direction === "out";
    node = node || el("div");
    node.textContent = "";
    node.className = "sr-msg " + (out ? "sr-out" : "sr-in");
    if (m.kind) node.classList.add("sr-kind-" + String(m.kind).replace(/[^a-z0-9_-]/gi, ""));
    if (m.id != null) node.setAttribute("data-id", String(m.id));
    var who = out ? (m.author || "客服 / Support") : "我 / You";
    node.appendChild(el("div", { class: "sr-meta", text: who + (m.created_at ? " · " + timeOf(m.created_at) : "") }));
    node.appendChild(el("p", { class: "sr-text", text: m.text == null ? "" : String(m.text) }));
    if (m.redactions && m.redactions.length) {
      node.appendChild(el("div", { class: "sr-foot", text: "敏感信息已隐藏 / Sensitive details were masked" }));
    }
    return node;
  }

  // Show the state of one of the customer's own, not yet accepted messages.
  function renderPending(item) {
    var node = item.el || (item.el = el("div"));
    node.textContent = "";
    node.className = "sr-msg sr-in " + (item.state === "failed" ? "sr-failed" : "sr-pending");
    node.setAttribute("data-client-id", item.cid);
    node.appendChild(el("p", { class: "sr-text", text: item.text }));
    var foot = el("div", { class: "sr-foot" });
    if (item.state === "failed") {
      foot.appendChild(document.createTextNode("未发送 / Not sent: " + (item.error || "")));
      if (item.retry) {
        var again = el("button", { type: "button", class: "sr-resend", text: "重发 / Resend" });
        again.addEventListener("click", function () { transmit(item); });
        foot.appendChild(again);
      } else {
        var drop = el("button", { type: "button", class: "sr-remove", text: "移除 / Remove" });
        drop.addEventListener("click", function () { forget(item); node.remove(); input.focus(); });
        foot.appendChild(drop);
      }
    } else {
      foot.textContent = "发送中… / Sending…";
    }
    node.appendChild(foot);
    return node;
  }

  function forget(item) {
    pending = pending.filter(function (p) { return p !== item; });
    inflight = inflight.filter(function (cid) { return cid !== item.cid; });
  }

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  function transmit(item) {
    item.state = "pending";
    item.error = null;
    renderPending(item);
    if (ws && ws.readyState === WebSocket.OPEN && historySeen) {
      ws.send(JSON.stringify({ type: "message", text: item.text, id: item.cid }));
      inflight.push(item.cid);
    } // otherwise it goes out after the next history frame
  }

  function send() {
    var text = input.value.trim();
    if (!text) return;
    if (text.length > MAX_TEXT) {
      showNotice("消息过长 / Message is too long (max " + MAX_TEXT + ")");
      return;
    }
    var item = { cid: newId(), text: text, state: "pending" };
    pending.push(item);
    list.appendChild(renderPending(item));
    scrollDown();
    input.value = "";
    showNotice("");
    transmit(item);
  }

  // --- frames from the server --------------------------------------------------------------
  function onHistory(messages) {
    var seen = new Set();
    list.textContent = "";
    (messages || []).forEach(function (m) {
      if (m.id != null) {
        if (seen.has(String(m.id))) return;
        seen.add(String(m.id));
        live.delete(String(m.id));
      }
      list.appendChild(renderMessage(m));
    });
    // Accepted moments ago but not yet in the store: keep showing them.
    live.forEach(function (m, id) { if (!seen.has(id)) list.appendChild(renderMessage(m)); });
    pending.forEach(function (item) { list.appendChild(item.el); });
    historySeen = true;
    pending.forEach(function (item) {
      if (item.state === "pending") transmit(item); // same client id: the server dedupes a resend
    });
    scrollDown();
  }

  function onMessage(m) {
    if (m.id == null || findById(m.id)) return;
    var stick = nearBottom();
    live.set(String(m.id), m);
    list.appendChild(renderMessage(m));
    if (stick) scrollDown();
  }

  function onAccepted(f) {
    inflight = inflight.filter(function (cid) { return cid !== f.client_id; });
    var item = pending.filter(function (p) { return p.cid === f.client_id; })[0];
    if (!item) return;
    forget(item);
    var m = { id: f.id, direction: "in", kind: "customer", text: f.text, created_at: new Date().toISOString(), redactions: f.redactions };
    if (findById(f.id)) { item.el.remove(); return; } // already restored by a history frame
    live.set(String(f.id), m);
    renderMessage(m, item.el).removeAttribute("data-client-id");
    item.el.classList.add("sr-sent");
  }

  function onError(f) {
    // Frames are answered in order, so an error without client_id is for the oldest in flight.
    var cid = f.client_id != null ? f.client_id : inflight[0];
    inflight = inflight.filter(function (c) { return c !== cid; });
    var item = pending.filter(function (p) { return p.cid === cid; })[0];
    if (!item) { showNotice(f.error || "出错了 / Something went wrong"); return; }
    item.state = "failed";
    item.error = f.error || "";
    item.retry = !!f.retry;
    renderPending(item);
  }

  function onFrame(event) {
    var f;
    try { f = JSON.parse(event.data); } catch (e) { return; }
    if (!f || typeof f !== "object") return;
    if (f.type === "history") onHistory(f.messages);
    else if (f.type === "message") onMessage(f);
    else if (f.type === "accepted") onAccepted(f);
    else if (f.type === "error") onError(f);
  }

  // --- connection ------------------------------------------------------------------------
  var ws = null;
  var historySeen = false;
  var attempt = 0;
  var timer = null;

  function createSession() {
    var name = root.getAttribute("data-name");
    return fetch(HTTP_BASE + "/chat/sessions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(name ? { name: name } : {})
    }).then(function (res) {
      if (res.status !== 201) throw new Error("session refused: HTTP " + res.status);
      return res.json();
    }).then(function (body) {
      saveToken(body.session);
      return body.session;
    });
  }

  function post(path, token) {
    return fetch(HTTP_BASE + path, {
      method: "POST", cache: "no-store", headers: { "Authorization": "Bearer " + token }
    });
  }

  // The session token never goes into a URL: the socket opens with a one-time ticket.
  // A 401 means the session is unknown or expired (another tab may have renewed it: then the
  // stored token differs and is tried next); null asks for a new session.
  function ticketFor(token) {
    return post("/chat/sessions/ticket", token).then(function (res) {
      if (res.status === 401) {
        if (loadToken() === token) { saveToken(null); live.clear(); }
        return null;
      }
      if (res.status !== 201) throw new Error("HTTP " + res.status);
      return res.json().then(function (body) { return body.ticket; });
    });
  }

  // A session expires when not renewed for a day; the widget renews it while the page is open.
  function renew() {
    var token = loadToken();
    if (!token) return Promise.resolve();
    return post("/chat/sessions/renew", token).then(function (res) {
      if (res.status === 401) { if (loadToken() === token) saveToken(null); return; }
      if (res.ok) return res.json().then(function (body) { saveToken(body.session); });
    }, function () { /* offline: the next renewal tries again */ });
  }

  function scheduleReconnect() {
    clearTimeout(timer);
    setStatus("reconnecting");
    var delay = Math.min(1000 * Math.pow(2, attempt), 10000);
    attempt += 1;
    timer = setTimeout(connect, delay);
  }

  function connect() {
    clearTimeout(timer);
    if (ws) return;
    var token = loadToken();
    var ready = token ? Promise.resolve(token) : createSession();
    ready.then(function (t) {
      return ticketFor(t).then(function (ticket) {
        if (ticket) open(ticket);
        else if (token) connect(); // the stored session was refused: start another one now
        else throw new Error("new session refused");
      });
    }).catch(function (err) {
      showNotice("无法连接客服 / Cannot reach support: " + err.message);
      scheduleReconnect();
    });
  }

  function open(ticket) {
    if (ws) return;
    var sock = new WebSocket(WS_BASE + "/chat/ws?ticket=" + encodeURIComponent(ticket));
    ws = sock;
    historySeen = false;
    sock.onopen = function () {
      attempt = 0;
      setStatus("connected");
      showNotice("");
    };
    sock.onmessage = function (event) { if (sock === ws) onFrame(event); };
    sock.onclose = function () {
      if (sock !== ws) return;
      ws = null;
      historySeen = false;
      inflight = []; // unanswered messages stay pending and are resent after the next history
      scheduleReconnect(); // an expired session (close code 4401) shows at the next ticket
    };
  }

  // --- wire up ---------------------------------------------------------------------------
  form.addEventListener("submit", function (e) { e.preventDefault(); send(); });
  input.addEventListener("keydown", function (e) {
    // Enter sends, Shift+Enter adds a line; never while an IME (pinyin...) is composing.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  });
  window.addEventListener("online", function () { if (!ws) { attempt = 0; connect(); } });

  setStatus("connecting");
  setInterval(renew, RENEW_MS);
  renew().then(connect);
})();
