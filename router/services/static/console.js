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
  var openConv = null;        // the conversation shown, as last read
  var seenOffers = null;      // ids of offers already announced (null: none read yet)
  var canned = [];
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
  function clock(iso) {
    var d = iso ? new Date(iso) : null;
    return d && !isNaN(d) ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  }
  // The first-response SLA in words: due at a time, in or overdue by a duration.
  function slaText(c) {
    if (c.first_response_at) return "已回复 / answered " + clock(c.first_response_at);
    if (!c.sla_due_at) return "无 SLA / no SLA";
    var left = (new Date(c.sla_due_at) - Date.now()) / 1000;
    return left < 0
      ? "SLA 超时 / overdue " + duration(-left)
      : "SLA " + clock(c.sla_due_at) + "（剩 / left " + duration(left) + "）";
  }
  function slaClass(c) {
    if (c.first_response_at || !c.sla_due_at) return "muted";
    var left = (new Date(c.sla_due_at) - Date.now()) / 1000;
    return left < 0 ? "sla-late" : left < 120 ? "sla-soon" : "muted";
  }
  function priorityText(c) { return "优先级 / Priority " + (c.priority == null ? 0 : c.priority); }
  function slaTitle(c) { return c.sla_due_at ? "首次回复期限 / First reply due " + when(c.sla_due_at) : ""; }
  function size(n) {
    n = Number(n) || 0;
    return n < 1024 ? n + " B" : n < 1048576 ? Math.round(n / 1024) + " KB" : (n / 1048576).toFixed(1) + " MB";
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
    if (window.Notification && Notification.permission === "default") {
      try { Notification.requestPermission(); } catch (err) { /* not offered by this browser */ }
    }
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
    $("search-form").hidden = true;
    $("alerts").textContent = "";
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
    $("tab-all").hidden = session.role !== "supervisor";
    $("search-form").hidden = false;
    seenOffers = null;
    loadCanned();
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
      if (frame && frame.type) { alertFor(frame); scheduleRefresh(); }
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
      .then(function () {
        return Promise.all([loadConversations(), loadOffers(), openId ? loadConversation(openId, false) : null,
          !$("all-panel").hidden ? loadAll() : null]);
      })
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
        el("span", { class: "row wrap" }, [
          el("span", { class: "muted", text: priorityText(c) }),
          el("span", { class: slaClass(c), text: slaText(c) })
        ]),
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
    if (id !== openId) { $("reply-text").value = ""; notice(""); deskSig = ""; }
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
      if (sig !== openSig) { openSig = sig; renderConversation(c); openConv = c; }
      loadDesk(id);
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
      ["优先级 / Priority", String(c.priority == null ? 0 : c.priority)],
      ["首次回复 SLA / First reply due", el("span", { class: slaClass(c), text: (c.sla_due_at ? when(c.sla_due_at) + " · " : "") + slaText(c) })],
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
      var meta = m.meta && typeof m.meta === "object" ? m.meta : {};
      var files = Array.isArray(meta.attachments) ? meta.attachments : [];
      if (files.length) {
        item.appendChild(el("ul", { class: "files", "aria-label": "附件 / Attachments" }, files.map(function (f) {
          var label = "文件 / File: " + (f.name || "file") + " · " + (f.content_type || "?") + " · " + size(f.size);
          return el("li", {}, [f.url ? el("a", { href: f.url, target: "_blank", rel: "noopener noreferrer", text: label }) : el("span", { text: label })]);
        })));
      }
      var rest = {};
      Object.keys(meta).forEach(function (k) { if (k !== "attachments") rest[k] = meta[k]; });
      if (Object.keys(rest).length) {
        item.appendChild(el("details", {}, [el("summary", { class: "muted", text: "详情 / Details" }), el("pre", { text: JSON.stringify(rest, null, 2) })]));
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
    ["queues", "all", "outbox"].forEach(function (t) {
      $("tab-" + t).setAttribute("aria-selected", String(t === name));
      $(t + "-panel").hidden = t !== name;
    });
    if (name === "outbox") loadOutbox();
    if (name === "all") loadAll();
  }
  $("tab-all").addEventListener("click", function () { showTab("all"); });
  $("all-refresh").addEventListener("click", function () { loadAll(); });
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

  // --- offered to you: Claim, and a notification with a sound for critical work ---------------
  function loadOffers() {
    return api("GET", "/api/agents/me").then(function (me) {
      var offers = (me.conversations || []).filter(function (c) { return !c.accepted_at; });
      renderOffers(offers);
      var ids = offers.map(function (c) { return c.id; });
      if (seenOffers) {
        offers.forEach(function (c) {
          if (seenOffers.indexOf(c.id) < 0 && c.urgency === "critical") {
            notify("紧急会话待认领 / Critical conversation offered to you", (c.ticket || "") + " · " + c.category + " · " + (c.customer_name || c.customer_address || ""), c.id);
          }
        });
      }
      seenOffers = ids;
    });
  }
  function renderOffers(offers) {
    var list = $("offer-list");
    list.textContent = "";
    $("offers-box").hidden = offers.length === 0;
    offers.forEach(function (c) {
      var claim = el("button", { type: "button", class: "primary claim", "data-claim": c.id, text: "认领 / Claim" });
      claim.addEventListener("click", function () {
        claim.disabled = true;
        api("POST", "/api/conversations/" + encodeURIComponent(c.id) + "/claim").then(function () {
          openConversation(c.id); refresh();
        }, function (err) { claim.disabled = false; alert(err.message); });
      });
      var open = el("button", { type: "button", "data-offer": c.id }, [
        el("span", { class: "row wrap" }, [el("span", {}, [badge(c.urgency), document.createTextNode(" " + (c.ticket || ""))]),
          el("span", { class: slaClass(c), title: slaTitle(c), text: slaText(c) })]),
        el("span", { class: "row" }, [el("strong", { class: "grow", text: c.customer_name || c.customer_address || "" }),
          el("span", { class: "muted", text: c.queue + " · " + c.channel })])
      ]);
      open.addEventListener("click", function () { openConversation(c.id); });
      list.appendChild(el("li", { class: "offer " + String(c.urgency || "") }, [open, claim]));
    });
  }
  function notify(title, body, tag) {
    beep();
    if (!window.Notification || Notification.permission !== "granted") return;
    try {
      var n = new Notification(title, { body: body, tag: tag, requireInteraction: true });
      n.onclick = function () { window.focus(); if (tag) openConversation(tag); n.close(); };
    } catch (err) { /* some browsers allow notifications only from a service worker */ }
  }
  function beep() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      var ctx = new Ctx(), osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = "square"; osc.frequency.value = 880; gain.gain.value = 0.08;
      osc.connect(gain); gain.connect(ctx.destination);
      osc.start(); osc.stop(ctx.currentTime + 0.35);
      osc.onended = function () { ctx.close(); };
    } catch (err) { /* no audio device */ }
  }
  // Supervisors hear of every lapsed offer; an agent of her own.
  function alertFor(frame) {
    var alerts = { "offer.lapsed": "认领超时，已转给下一位坐席 / Offer lapsed, moved on",
      "offer.reoffered": "无其他坐席可接，已重新分配 / Nobody else can take it: offered again",
      "agent.away": "连续多次未认领，已设为离开 / Several offers lapsed in a row: set away" };
    if (!alerts[frame.type] || !auth) return;
    var mine = frame.assignee === auth.username;
    if (auth.role !== "supervisor" && !mine) return;
    var text = alerts[frame.type] + " · " + frame.queue + " · " + (frame.assignee || "") + (frame.urgency === "critical" ? " · CRITICAL" : "");
    var list = $("alerts");
    list.insertBefore(el("li", { "data-alert": frame.type, text: new Date().toLocaleTimeString() + " " + text }), list.firstChild);
    while (list.children.length > 5) list.removeChild(list.lastChild);
    if (frame.urgency === "critical" || (mine && frame.type === "agent.away")) notify(alerts[frame.type], text, frame.conversation_id);
    if (mine && frame.type === "agent.away") loadStatus();
  }

  // --- every queue (supervisors) ----------------------------------------------------------------
  function loadAll() {
    return Promise.all(queues.map(function (q) {
      return api("GET", "/api/queues/" + encodeURIComponent(q.name) + "/conversations").then(function (d) { return d.conversations || []; });
    })).then(function (lists) {
      var rows = $("all-rows");
      rows.textContent = "";
      [].concat.apply([], lists).forEach(function (c) {
        var tr = el("tr", { "data-id": c.id }, [
          el("td", { text: c.queue }), el("td", {}, [badge(c.urgency)]), el("td", { text: c.priority }),
          el("td", { text: c.ticket }), el("td", { text: c.customer_name || c.customer_address }),
          el("td", { text: c.channel }), el("td", { text: c.status }), el("td", { text: c.assignee || "—" }),
          el("td", { text: duration(c.waiting_seconds) }), el("td", { class: slaClass(c), text: slaText(c) })
        ]);
        tr.addEventListener("click", function () { showTab("queues"); openConversation(c.id); });
        rows.appendChild(tr);
      });
      if (!rows.children.length) rows.appendChild(el("tr", {}, [el("td", { colspan: "10", class: "muted", text: "空 / Empty" })]));
    }).catch(function () {});
  }

  // --- search -----------------------------------------------------------------------------------
  $("search-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var q = $("search-q").value.trim();
    if (q.length < 3) return;
    api("GET", "/api/search?q=" + encodeURIComponent(q)).then(function (data) {
      showTab("queues");
      var list = $("search-list");
      list.textContent = "";
      $("search-box").hidden = false;
      $("search-empty").hidden = (data.results || []).length > 0;
      (data.results || []).forEach(function (c) {
        var b = el("button", { type: "button", "data-result": c.id }, [
          el("span", { class: "row" }, [el("span", {}, [badge(c.urgency), document.createTextNode(" " + c.ticket)]), el("span", { class: "muted", text: c.queue + " · " + c.status })]),
          el("span", { class: "row" }, [el("strong", { text: c.customer_name || c.customer_address }), el("span", { class: "muted", text: c.channel })]),
          el("span", { class: "preview muted", text: c.preview || "" })
        ]);
        b.addEventListener("click", function () { openConversation(c.id); });
        list.appendChild(el("li", {}, [b]));
      });
    }, function (err) { alert(err.message); });
  });
  $("search-close").addEventListener("click", function () { $("search-box").hidden = true; });

  // --- canned replies ---------------------------------------------------------------------------
  function loadCanned() {
    api("GET", "/api/canned").then(function (data) {
      canned = data.canned || [];
      var select = $("canned");
      select.textContent = "";
      select.appendChild(el("option", { value: "", text: "—" }));
      canned.forEach(function (r) { select.appendChild(el("option", { value: r.name, text: r.name })); });
    }).catch(function () {});
  }
  $("canned").addEventListener("change", function () {
    var name = this.value, c = openConv;
    var reply = canned.filter(function (r) { return r.name === name; })[0];
    if (!reply) return;
    var text = c && c.language === "zh" ? reply.zh : reply.en;
    $("reply-text").value = text.split("{ticket}").join(c ? c.ticket : "");
    $("reply-text").focus();
    this.value = "";
  });

  // --- notes, tags and the customer ---------------------------------------------------------------
  var deskSig = "";
  function loadDesk(id) {
    return api("GET", "/api/conversations/" + encodeURIComponent(id) + "/desk").then(function (d) {
      if (id !== openId) return;
      var sig = JSON.stringify(d);
      if (sig === deskSig) return;
      deskSig = sig;
      renderDesk(d);
    }).catch(function () {});
  }
  function renderDesk(d) {
    var tags = $("tag-list");
    tags.textContent = "";
    (d.tags || []).forEach(function (t) {
      var x = el("button", { type: "button", "aria-label": "删除标签 / Remove tag " + t, text: "×" });
      x.addEventListener("click", function () {
        api("DELETE", "/api/conversations/" + encodeURIComponent(openId) + "/tags/" + encodeURIComponent(t)).then(function () { loadDesk(openId); });
      });
      tags.appendChild(el("li", { "data-tag": t }, [document.createTextNode(t), x]));
    });
    var notes = $("note-list");
    notes.textContent = "";
    (d.notes || []).forEach(function (n) {
      notes.appendChild(el("li", { "data-note": n.id }, [el("div", { class: "muted", text: n.author + " · " + when(n.created_at) }), el("p", { class: "text", text: n.text })]));
    });
    var cust = d.customer || {}, info = $("customer-info");
    info.textContent = "";
    [["姓名 / Name", cust.name || "—"], ["电话 / Phone", cust.phone || "—"]].forEach(function (p) {
      info.appendChild(el("dt", { text: p[0] })); info.appendChild(el("dd", { text: p[1] }));
    });
    (cust.identities || []).forEach(function (i) {
      info.appendChild(el("dt", { text: i.channel }));
      info.appendChild(el("dd", { class: "identity", text: i.address + (i.verified_phone ? " ✓ " + i.verified_phone : "") }));
    });
    var hist = $("customer-history");
    hist.textContent = "";
    (cust.history || []).forEach(function (c) {
      var b = el("button", { type: "button", "data-history": c.id }, [
        el("span", { class: "row" }, [el("span", {}, [badge(c.urgency), document.createTextNode(" " + c.ticket + " · " + c.channel)]),
          el("span", { class: "muted", text: when(c.created_at) + " · " + c.status })]),
        el("span", { class: "preview muted", text: c.preview || "" })
      ]);
      b.addEventListener("click", function () { openConversation(c.id); });
      hist.appendChild(el("li", { "aria-current": c.id === openId ? "true" : null }, [b]));
    });
  }
  $("tag-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var tag = $("tag-text").value.trim();
    if (!tag || !openId) return;
    api("POST", "/api/conversations/" + encodeURIComponent(openId) + "/tags", { tag: tag }).then(function () {
      $("tag-text").value = ""; loadDesk(openId);
    }, function (err) { notice(err.message, true); });
  });
  $("note-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = $("note-text").value.trim();
    if (!text || !openId) return;
    api("POST", "/api/conversations/" + encodeURIComponent(openId) + "/notes", { text: text }).then(function () {
      $("note-text").value = ""; loadDesk(openId);
    }, function (err) { notice(err.message, true); });
  });

  // --- boot ------------------------------------------------------------------------------------
  var saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch (e) { saved = null; }
  if (saved && saved.token) start(saved); else $("login-username").focus();
})();
