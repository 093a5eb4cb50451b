"use strict";
(function () {
  var KEY = "supportrouter.console";
  var POLL_MS = 5000;
  var $ = function (id) { return document.getElementById(id); };

  var auth = null;            // {token, username, role, queues}
  var queues = [];            // last /api/queues answer
  var selectedQueue = null;
  var openId = null;          // conversation shown in the right pane
  var openSig = "";           // last rendered conversation, to skip identical re-renders
  var pollTimer = null, refreshTimer = null, events = null, eventsRetry = 0, eventsTimer = null;

  // --- helpers ---------------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k] == null ? "" : String(attrs[k]);
      else if (attrs[k] != null) node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function duration(seconds) {
    var s = Math.max(0, Math.round(Number(seconds) || 0));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  }
  function when(iso) {
    var d = iso ? new Date(iso) : null;
    return d && !isNaN(d) ? d.toLocaleString() : "";
  }
  function badge(urgency) {
    var u = String(urgency || "normal");
    return el("span", { class: "badge " + u.replace(/[^a-z]/g, ""), text: u });
  }
  function notice(text, isError) {
    var n = $("conv-notice");
    n.textContent = text || "";
    n.className = "notice" + (isError ? " error" : "");
  }

  function ApiError(status, message) { this.status = status; this.message = message; }

  function api(method, path, body) {
    var headers = { "Authorization": "Bearer " + (auth ? auth.token : "") };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" })
      .then(function (res) {
        return res.json().catch(function () { return null; }).then(function (data) {
          if (res.status === 401) { logout("登录已过期，请重新登录 / Session expired, please sign in again"); }
          if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText || ("HTTP " + res.status));
          return data;
        });
      });
  }

  // --- login / logout ----------------------------------------------------------------------
  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var button = $("login-submit");
    button.disabled = true;
    $("login-error").textContent = "";
    fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("login-username").value.trim(), password: $("login-password").value })
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (!res.ok) throw new Error(res.status === 401 ? "用户名或密码错误 / Wrong username or password" : (data.error || "HTTP " + res.status));
        $("login-password").value = "";
        sessionStorage.setItem(KEY, JSON.stringify(data));
        start(data);
      });
    }).catch(function (err) {
      $("login-error").textContent = err.message || "无法登录 / Cannot sign in";
    }).then(function () { button.disabled = false; });
  });

  $("logout").addEventListener("click", function () {
    // The server revokes the token; signing out here does not wait for its answer.
    if (auth) fetch("/api/logout", { method: "POST", headers: { "Authorization": "Bearer " + auth.token } }).catch(function () {});
    logout("");
  });

  // Agents start offline: work is offered only to an agent who says they are available.
  $("agent-status").addEventListener("change", function () {
    var select = this;
    api("POST", "/api/agents/me/status", { status: select.value })
      .then(function (view) { select.value = view.status; refresh(); })
      .catch(function (err) { alert(err.message); loadStatus(); });
  });

  function loadStatus() {
    api("GET", "/api/agents/me").then(function (view) { $("agent-status").value = view.status; })
      .catch(function () {});
  }

  function logout(message) {
    if (!auth) return;
    auth = null;
    sessionStorage.removeItem(KEY);
    clearInterval(pollTimer);
    clearTimeout(eventsTimer);
    if (events) { var s = events; events = null; s.close(); }
    openId = null; selectedQueue = null; queues = [];
    $("app-view").hidden = true;
    $("logout").hidden = true;
    $("status-box").hidden = true;
    $("live").hidden = true;
    $("who").textContent = "";
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
    $("login-username").focus();
  }

  function start(session) {
    auth = session;
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("logout").hidden = false;
    $("status-box").hidden = false;
    loadStatus();
    $("live").hidden = false;
    $("who").textContent = session.username + " (" + session.role + ")";
    $("tab-outbox").hidden = session.role !== "supervisor";
    showTab("queues");
    closeConversation();
    selectedQueue = sessionStorage.getItem(KEY + ".queue");
    refresh();
    pollTimer = setInterval(function () { refresh(); if (!$("outbox-panel").hidden) loadOutbox(); }, POLL_MS);
    connectEvents();
  }

  // --- live events (the 5 s poll covers any gap) -----------------------------------------------
  // The socket opens with a one-time ticket: the long-lived token never goes into a URL.
  function connectEvents() {
    if (!auth) return;
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    api("POST", "/api/events/ticket").then(function (t) {
      if (auth && !events) openEvents(proto + location.host + "/api/events?ticket=" + encodeURIComponent(t.ticket));
    }, function () {
      if (!auth) return; // 401: api() has signed out
      setLive(false);
      eventsTimer = setTimeout(connectEvents, Math.min(1000 * Math.pow(2, eventsRetry++), 10000));
    });
  }
  function openEvents(url) {
    var sock = new WebSocket(url);
    events = sock;
    sock.onopen = function () { eventsRetry = 0; setLive(true); };
    sock.onmessage = function (e) {
      var frame;
      try { frame = JSON.parse(e.data); } catch (err) { return; }
      if (frame && frame.type) scheduleRefresh();
    };
    sock.onclose = function () {
      if (sock !== events) return;
      events = null;
      setLive(false);
      var delay = Math.min(1000 * Math.pow(2, eventsRetry++), 10000);
      eventsTimer = setTimeout(connectEvents, delay);
    };
  }
  function setLive(on) {
    var s = $("live");
    s.className = "dot" + (on ? " live" : "");
    s.textContent = on ? "实时 / live" : "轮询 / polling";
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 150);
  }

  var refreshing = false, refreshAgain = false;
  function refresh() {
    if (!auth) return;
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    loadQueues()
      .then(function () { return Promise.all([loadConversations(), openId ? loadConversation(openId, false) : null]); })
      .catch(function () { /* a failed poll is retried on the next one */ })
      .then(function () {
        refreshing = false;
        if (refreshAgain) { refreshAgain = false; refresh(); }
      });
  }

  // --- queues -------------------------------------------------------------------------------
  function loadQueues() {
    return api("GET", "/api/queues").then(function (data) {
      queues = data.queues || [];
      var names = queues.map(function (q) { return q.name; });
      if (names.indexOf(selectedQueue) < 0) selectedQueue = names[0] || null;
      renderQueues();
      renderTransferOptions();
    });
  }

  function renderQueues() {
    var list = $("queue-list");
    list.textContent = "";
    queues.forEach(function (q) {
      var late = q.waiting > 0 && q.sla_seconds && q.oldest_wait_seconds > q.sla_seconds;
      var button = el("button", { type: "button", "data-queue": q.name, "aria-current": q.name === selectedQueue ? "true" : null }, [
        el("span", { class: "row" }, [el("strong", { text: q.name }), el("span", { class: "count", title: "等待中 / waiting", text: q.waiting })]),
        el("span", { class: "muted", text: q.description }),
        q.waiting > 0 ? el("span", { class: "muted" + (late ? " breach" : ""), text:
          "最久 / oldest " + duration(q.oldest_wait_seconds) + " · SLA " + duration(q.sla_seconds) + (late ? " ⚠" : "") }) : null
      ]);
      button.addEventListener("click", function () {
        selectedQueue = q.name;
        sessionStorage.setItem(KEY + ".queue", q.name);
        renderQueues();
        loadConversations();
      });
      list.appendChild(el("li", {}, [button]));
    });
  }

  function renderTransferOptions() {
    var select = $("transfer-queue");
    var keep = select.value;
    select.textContent = "";
    queues.forEach(function (q) { select.appendChild(el("option", { value: q.name, text: q.name })); });
    if (keep) select.value = keep;
  }

  // --- conversations in the selected queue ---------------------------------------------------
  function loadConversations() {
    if (!selectedQueue) { renderConversations([]); return Promise.resolve(); }
    var queue = selectedQueue;
    return api("GET", "/api/queues/" + encodeURIComponent(queue) + "/conversations").then(function (data) {
      if (queue === selectedQueue) renderConversations(data.conversations || []);
    });
  }

  function renderConversations(items) {
    var list = $("conversation-list");
    list.textContent = "";
    $("convs-h").textContent = "会话 / Conversations" + (selectedQueue ? " · " + selectedQueue : "");
    $("conv-list-empty").hidden = items.length > 0;
    items.forEach(function (c) {   // the server sends them most urgent first: keep that order
      var button = el("button", { type: "button", "data-id": c.id, "aria-current": c.id === openId ? "true" : null }, [
        el("span", { class: "row" }, [
          el("span", {}, [badge(c.urgency), document.createTextNode(" " + (c.ticket || ""))]),
          el("span", { class: "muted", text: duration(c.waiting_seconds) })
        ]),
        el("span", { class: "row" }, [
          el("strong", { text: c.customer_name || c.customer_address || "" }),
          el("span", { class: "muted", text: c.channel + " · " + c.category })
        ]),
        el("span", { class: "preview muted", text: c.preview || "" }),
        el("span", { class: "muted", text: c.assignee ? "处理人 / with " + c.assignee : "待认领 / unclaimed" })
      ]);
      button.addEventListener("click", function () { openConversation(c.id); });
      list.appendChild(el("li", { class: String(c.urgency || "") }, [button]));
    });
  }

  // --- one conversation ------------------------------------------------------------------------
  function closeConversation(message) {
    openId = null;
    openSig = "";
    $("conv-body").hidden = true;
    $("conv-empty").hidden = false;
    $("conv-empty").textContent = message || "请选择一个会话 / Select a conversation";
    $("conv-h").textContent = "会话详情 / Conversation";
  }

  function openConversation(id) {
    if (id !== openId) { $("reply-text").value = ""; notice(""); }
    openId = id;
    openSig = "";
    Array.prototype.forEach.call($("conversation-list").querySelectorAll("button"), function (b) {
      if (b.getAttribute("data-id") === id) b.setAttribute("aria-current", "true"); else b.removeAttribute("aria-current");
    });
    loadConversation(id, true);
  }

  function loadConversation(id, focus) {
    return api("GET", "/api/conversations/" + encodeURIComponent(id)).then(function (c) {
      if (id !== openId) return;
      var sig = JSON.stringify(c, function (k, v) { return k === "waiting_seconds" ? undefined : v; });
      if (sig !== openSig) { openSig = sig; renderConversation(c); }
      if (focus) $("conv-h").focus();
    }, function (err) {
      if (id !== openId) return;
      if (err.status === 404) { notice(""); closeConversation("该会话已不在您的队列中 / That conversation is no longer in your queues"); }
      else notice(err.message, true);
    });
  }

  function renderConversation(c) {
    $("conv-empty").hidden = true;
    $("conv-body").hidden = false;
    $("conv-h").textContent = "会话详情 / Conversation " + (c.ticket || "");
    var info = $("conv-info");
    info.textContent = "";
    [
      ["紧急度 / Urgency", badge(c.urgency)],
      ["队列 / Queue", c.queue], ["类别 / Category", c.category], ["渠道 / Channel", c.channel],
      ["状态 / Status", c.status], ["处理人 / Assignee", c.assignee || "—"],
      ["客户 / Customer", c.customer_name || "—"], ["地址 / Address", c.customer_address],
      ["语言 / Language", c.language]
    ].forEach(function (pair) {
      info.appendChild(el("dt", { text: pair[0] }));
      info.appendChild(pair[1] instanceof Node ? el("dd", {}, [pair[1]]) : el("dd", { text: pair[1] == null ? "" : pair[1] }));
    });

    var list = $("conv-messages");
    list.textContent = "";
    (c.messages || []).forEach(function (m) {
      var who = m.direction === "in" ? (m.author || c.customer_name || "客户 / Customer")
        : m.kind === "acknowledgement" ? "自动确认 / Auto-acknowledgement" : (m.author || "客服 / Support");
      var item = el("li", { class: (m.direction === "in" ? "in" : "out") + " " + String(m.kind || "").replace(/[^a-z_]/g, ""), "data-id": m.id }, [
        el("div", { class: "muted", text: who + " · " + when(m.created_at) }),
        el("p", { class: "text", text: m.text })
      ]);
      if (m.meta && typeof m.meta === "object" && Object.keys(m.meta).length) {
        item.appendChild(el("details", {}, [el("summary", { class: "muted", text: "详情 / Details" }), el("pre", { text: JSON.stringify(m.meta, null, 2) })]));
      }
      list.appendChild(item);
    });

    var closed = c.status === "resolved";
    ["conv-claim", "transfer-send", "conv-resolve", "reply-send", "transfer-queue"].forEach(function (id) { $(id).disabled = closed; });
    $("conv-claim").hidden = !!auth && c.assignee === auth.username;
    Array.prototype.forEach.call($("transfer-queue").options, function (o) { o.disabled = o.value === c.queue; });
    if ($("transfer-queue").value === c.queue) {
      var other = queues.filter(function (q) { return q.name !== c.queue; })[0];
      $("transfer-queue").value = other ? other.name : "";
    }
    if (closed) notice("此会话已解决 / This conversation is resolved");
    else if (c.assignee && auth && c.assignee !== auth.username) notice("由 " + c.assignee + " 处理中 / Held by " + c.assignee);
  }

  function act(button, method, path, body, done) {
    if (!openId) return;
    var id = openId;
    button.disabled = true;
    notice("");
    api(method, path.replace("{id}", encodeURIComponent(id)), body).then(function (data) {
      if (done) done(data);
      refresh();
    }, function (err) {
      var text = err.status === 409 ? "冲突 / Conflict: " + err.message : err.message;
      notice(text, true);
    }).then(function () { button.disabled = false; });
  }

  $("conv-claim").addEventListener("click", function () {
    act(this, "POST", "/api/conversations/{id}/claim", undefined, function () { notice("已认领 / Claimed"); });
  });
  $("conv-resolve").addEventListener("click", function () {
    act(this, "POST", "/api/conversations/{id}/resolve", undefined, function () { notice("已解决 / Resolved"); });
  });
  $("transfer-send").addEventListener("click", function () {
    var queue = $("transfer-queue").value;
    if (!queue) return;
    act(this, "POST", "/api/conversations/{id}/transfer", { queue: queue }, function () { notice("已转接到 / Transferred to " + queue); });
  });
  $("reply-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = $("reply-text").value.trim();
    if (!text) { $("reply-text").focus(); return; }
    act($("reply-send"), "POST", "/api/conversations/{id}/messages", { text: text }, function (data) {
      $("reply-text").value = "";
      notice(data && data.status === "queued" ? "已排队，稍后发送 / Queued, will be sent shortly" : "已发送 / Sent");
    });
  });
  $("reply-text").addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); $("reply-form").requestSubmit(); }
  });

  // --- tabs and the sandbox outbox -------------------------------------------------------------
  function showTab(name) {
    var outbox = name === "outbox";
    $("tab-queues").setAttribute("aria-selected", String(!outbox));
    $("tab-outbox").setAttribute("aria-selected", String(outbox));
    $("queues-panel").hidden = outbox;
    $("outbox-panel").hidden = !outbox;
    if (outbox) loadOutbox();
  }
  $("tab-queues").addEventListener("click", function () { showTab("queues"); });
  $("tab-outbox").addEventListener("click", function () { showTab("outbox"); });
  $("outbox-refresh").addEventListener("click", loadOutbox);

  function loadOutbox() {
    if (!auth || auth.role !== "supervisor") return;
    api("GET", "/api/outbox").then(function (data) {
      var rows = $("outbox-rows");
      rows.textContent = "";
      (data.outbox || []).forEach(function (o) {
        rows.appendChild(el("tr", {}, [
          el("td", { text: when(o.created_at) }), el("td", { text: o.channel }), el("td", { text: o.recipient }),
          el("td", { text: o.kind }), el("td", { class: "text", text: o.text })
        ]));
      });
      if (!rows.children.length) rows.appendChild(el("tr", {}, [el("td", { colspan: "5", class: "muted", text: "空 / Empty" })]));
    }, function () { /* shown again on the next poll */ });
  }

  // --- boot ------------------------------------------------------------------------------------
  var saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch (e) { saved = null; }
  if (saved && saved.token) start(saved); else $("login-username").focus();
})();
