// The bitbridge console: one plain ES module, no dependencies, no build step.
// Every string that comes from Bitbucket (names, titles, display names) reaches the page through
// textContent (h() below); nothing is ever assigned to innerHTML. Links from data pass safeUrl().

const boot = JSON.parse(document.getElementById("boot").textContent);
const state = {
  user: boot.user,
  connections: boot.connections,
  providers: boot.providers,
  admin: boot.admin,
};
const POLL_ACTIVE_MS = 1500; // while an import runs
const POLL_ACTIVITY_MS = 4000; // while the Activity tab is open

// ------------------------------------------------------------------ DOM and HTTP helpers

const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function safeUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || body || {};
    super(err.message || `Request failed (${status})`);
    this.status = status;
    this.body = body || {};
    this.connectUrl = err.connect_url || err.reconnect_url || (body && body.reconnect_url) || null;
  }
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    // JSON on every change: with the Origin check at the edge, this is the CSRF defence.
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body ?? {});
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  const error = new ApiError(response.status, data);
  if (response.status === 401 && !error.connectUrl) {
    location.assign("/"); // the session ended: back to sign-in
  }
  if (!response.ok) throw error;
  return data;
}

function announce(message, isError = false) {
  const status = $("status");
  status.classList.toggle("error", isError);
  status.replaceChildren(message);
}

function fail(error) {
  const parts = [error.message];
  if (error.connectUrl) {
    parts.push(" ", h("a", { href: safeUrl(error.connectUrl) || "#connections" }, "Reconnect"));
  }
  announce(h("span", {}, parts), true);
}

function badge(text, tone = "") {
  return h("span", { class: `badge ${tone}` }, text);
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function copyButton(label, getText) {
  return h(
    "button",
    {
      type: "button",
      class: "secondary",
      "data-action": `copy-${label}`,
      onclick: async (event) => {
        const button = event.currentTarget;
        try {
          const text = await getText();
          await navigator.clipboard.writeText(text);
          announce(`${label} copied to the clipboard.`);
        } catch (error) {
          if (error instanceof ApiError) return fail(error);
          announce(`Could not use the clipboard; select the text and copy it by hand.`, true);
        }
        button.focus();
      },
    },
    `Copy ${label}`,
  );
}

const connectUrl = (providerId, purpose = "connect") =>
  `/auth/${encodeURIComponent(providerId)}/authorize?purpose=${purpose}&return_to=${encodeURIComponent("/#connections")}`;

const connectionOf = (providerId) => state.connections.find((c) => c.provider === providerId);
const providerOf = (providerId) => state.providers.find((p) => p.id === providerId);

// ------------------------------------------------------------------ views (tabs)

const views = {};
let pendingNotice = null; // shown on the next tab, e.g. "Import started" on Imports

function show(name) {
  announce(pendingNotice || "");
  pendingNotice = null;
  if (!views[name] || (name === "admin" && !state.admin)) name = defaultView();
  for (const key of Object.keys(views)) {
    $(`view-${key}`).hidden = key !== name;
  }
  for (const link of document.querySelectorAll("#tabs a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  views[name].show();
}

function defaultView() {
  return usableConnections().length ? "repositories" : "connections";
}

function usableConnections() {
  return state.connections.filter((c) => c.status === "active" && providerOf(c.provider)?.imports);
}

// ------------------------------------------------------------------ connections

views.connections = {
  show() {
    const list = $("connection-list");
    list.replaceChildren(
      ...state.providers.map((provider) => {
        const conn = connectionOf(provider.id);
        const status = conn ? conn.status : "not_connected";
        const tone = { active: "ok", reauth_required: "warn" }[status] || "";
        const label = { active: "Active", reauth_required: "Reconnect needed", not_connected: "Not connected" }[status];
        const actions = [];
        if (!conn && provider.imports) {
          actions.push(h("a", { class: "button", href: connectUrl(provider.id) }, "Connect"));
        }
        if (conn && status === "reauth_required") {
          actions.push(h("a", { class: "button", href: connectUrl(provider.id) }, "Reconnect"));
        }
        if (conn) {
          actions.push(
            h("button", { type: "button", class: "danger", onclick: () => disconnect(provider) }, "Disconnect"),
          );
        }
        return h(
          "li",
          { class: "card", "data-provider": provider.id },
          h("h2", {}, provider.label),
          h("p", {}, badge(label, tone), " ", h("span", { class: "hint" }, provider.flavor === "cloud" ? "Bitbucket Cloud" : "Bitbucket Data Center")),
          conn
            ? h(
                "dl",
                { class: "facts" },
                h("dt", {}, "Account"),
                h("dd", {}, conn.display_name || conn.username || conn.external_id),
                conn.username ? [h("dt", {}, "Username"), h("dd", {}, conn.username)] : null,
                h("dt", {}, "Since"),
                h("dd", {}, when(conn.connected_at)),
              )
            : h("p", { class: "hint" }, provider.imports ? "Connect to list and import its repositories." : "Sign-in only."),
          h("div", { class: "actions" }, actions),
        );
      }),
    );
  },
};

async function disconnect(provider) {
  const ok = window.confirm(
    `Disconnect ${provider.label}? bitbridge deletes its tokens; imported snapshots stay.`,
  );
  if (!ok) return;
  try {
    const answer = await api("DELETE", `/api/connections/${encodeURIComponent(provider.id)}`);
    const me = await api("GET", "/api/me");
    state.connections = me.connections;
    views.connections.show();
    announce(`${answer.message} ${answer.webhooks.message} ${answer.revocation}`);
    repoView.reset();
  } catch (error) {
    fail(error);
  }
}

// ------------------------------------------------------------------ repositories

const repoView = {
  provider: null,
  query: "",
  cursor: null,
  seq: 0,
  groups: new Map(), // owner -> <ul>
  selected: new Map(), // full_name -> repository
  loaded: false,

  reset() {
    this.loaded = false;
    this.selected.clear();
  },

  show() {
    const usable = usableConnections();
    const select = $("repo-provider");
    select.replaceChildren(
      ...usable.map((c) => h("option", { value: c.provider }, providerOf(c.provider)?.label || c.provider)),
    );
    if (!usable.length) {
      $("repo-empty").hidden = false;
      $("repo-empty").replaceChildren("Connect a Bitbucket provider first, under ", h("a", { href: "#connections" }, "Connections"), ".");
      $("repo-groups").replaceChildren();
      $("repo-more").hidden = true;
      $("repo-actions").hidden = true;
      return;
    }
    $("repo-actions").hidden = false;
    if (!usable.some((c) => c.provider === this.provider)) this.provider = usable[0].provider;
    select.value = this.provider;
    if (!this.loaded) this.load(false);
    this.renderSelection();
  },

  async load(more) {
    const seq = ++this.seq; // a newer search makes older answers irrelevant
    const params = new URLSearchParams({ provider: this.provider, limit: "50" });
    if (this.query) params.set("q", this.query);
    if (more && this.cursor) params.set("cursor", this.cursor);
    const embedded = boot.repositories; // the first page came with the HTML: no request for it
    boot.repositories = null;
    if (!more && !this.query && embedded && embedded.provider === this.provider) {
      return this.render(embedded, false);
    }
    const box = $("repo-groups");
    box.setAttribute("aria-busy", "true");
    $("repo-more").disabled = true;
    if (!more) {
      this.groups.clear();
      box.replaceChildren(h("p", { class: "hint" }, "Loading repositories..."));
    }
    try {
      const page = await api("GET", `/api/repos?${params}`);
      if (seq !== this.seq) return;
      this.render(page, more);
    } catch (error) {
      if (seq !== this.seq) return;
      if (!more) box.replaceChildren();
      fail(error);
    } finally {
      if (seq === this.seq) {
        box.setAttribute("aria-busy", "false");
        $("repo-more").disabled = false;
      }
    }
  },

  render(page, more) {
    if (!more) {
      this.groups.clear();
      $("repo-groups").replaceChildren();
    }
    this.loaded = true;
    this.cursor = page.next_cursor;
    for (const repo of page.repositories) this.addRow(repo);
    const none = !more && page.repositories.length === 0;
    $("repo-empty").hidden = !none;
    if (none) $("repo-empty").replaceChildren(this.query ? "No repository matches that search." : "No repositories here.");
    $("repo-more").hidden = !this.cursor;
  },

  group(owner) {
    if (!this.groups.has(owner)) {
      const list = h("ul", { class: "repos" });
      const selectAll = h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () => {
            for (const box of list.querySelectorAll("input[type=checkbox]")) {
              if (!box.checked) box.click(); // through its change handler, so the selection follows
            }
          },
        },
        "Select all shown",
        h("span", { class: "sr-only" }, ` in ${owner}`),
      );
      $("repo-groups").append(h("fieldset", { class: "group" }, h("legend", {}, owner, " ", selectAll), list));
      this.groups.set(owner, list);
    }
    return this.groups.get(owner);
  },

  addRow(repo) {
    const id = `repo-${this.provider}-${repo.id}`.replace(/[^A-Za-z0-9_-]/g, "_");
    const job = repo.import;
    const importBadge = job ? badge(`Import: ${job.state.replaceAll("_", " ")}`, stateTone(job.state)) : badge("Not imported");
    const hook = job && job.webhook ? badge(`Webhook: ${job.webhook.replaceAll("_", " ")}`, hookTone(job.webhook)) : null;
    const box = h("input", {
      type: "checkbox",
      id,
      checked: this.selected.has(repo.full_name),
      onchange: (event) => {
        if (event.target.checked) this.selected.set(repo.full_name, repo);
        else this.selected.delete(repo.full_name);
        this.renderSelection();
      },
    });
    const url = safeUrl(repo.html_url);
    this.group(repo.owner).append(
      h(
        "li",
        { "data-repo": repo.full_name },
        box,
        h("label", { for: id }, h("span", { class: "name" }, repo.name || repo.slug), h("span", { class: "full" }, repo.full_name)),
        repo.is_private ? badge("private") : badge("public", "info"),
        importBadge,
        hook,
        url ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, "Open", h("span", { class: "sr-only" }, ` ${repo.full_name} on Bitbucket`)) : null,
      ),
    );
  },

  renderSelection() {
    const count = this.selected.size;
    $("repo-selected").textContent = `${count} selected`;
    $("repo-import").disabled = count === 0;
    $("repo-clear").disabled = count === 0;
  },

  async importSelected() {
    const names = [...this.selected.keys()];
    $("repo-import").disabled = true;
    try {
      // POST /api/imports takes at most 20 repositories (its 400 says so): a larger selection goes in parts.
      let count = 0;
      for (let i = 0; i < names.length; i += 20) {
        const part = names.slice(i, i + 20);
        count += (await api("POST", "/api/imports", { provider: this.provider, repositories: part })).imports.length;
      }
      pendingNotice = `Import started for ${count} ${count === 1 ? "repository" : "repositories"}.`;
      this.selected.clear();
      this.loaded = false;
      location.hash = "#imports";
    } catch (error) {
      fail(error);
      this.renderSelection();
    }
  },
};
views.repositories = repoView;

function stateTone(value) {
  return { completed: "ok", failed: "bad", cancelled: "", waiting_rate_limit: "warn", waiting_budget: "warn", running: "info", queued: "info" }[value] || "";
}

function hookTone(value) {
  return { installed: "ok", manual_required: "warn", failed: "bad" }[value] || "";
}

// ------------------------------------------------------------------ imports

const importView = {
  cards: new Map(), // job id -> {signature, element}
  timer: null,
  visible: false,

  show() {
    this.visible = true;
    this.refresh();
  },

  async refresh() {
    clearTimeout(this.timer);
    let jobs = [];
    try {
      jobs = (await api("GET", "/api/imports?limit=50")).imports;
    } catch (error) {
      fail(error);
    }
    this.render(jobs);
    const active = jobs.some((j) => ["queued", "running", "waiting_rate_limit", "waiting_budget"].includes(j.state));
    if (active && !$("view-imports").hidden) this.timer = setTimeout(() => this.refresh(), POLL_ACTIVE_MS);
  },

  render(jobs) {
    $("imports-empty").hidden = jobs.length > 0;
    const list = $("import-list");
    const keep = new Set();
    jobs.forEach((job, index) => {
      keep.add(job.id);
      const signature = JSON.stringify([job.state, job.step, job.progress, job.webhook, job.error, job.waiting_until, job.snapshot]);
      let entry = this.cards.get(job.id);
      if (!entry || entry.signature !== signature) {
        const element = jobCard(job);
        if (entry) {
          const focused = entry.element.contains(document.activeElement) && document.activeElement.dataset.action;
          entry.element.replaceWith(element);
          if (focused) element.querySelector(`[data-action="${focused}"]`)?.focus();
        }
        entry = { signature, element };
        this.cards.set(job.id, entry);
      }
      if (list.children[index] !== entry.element) list.insertBefore(entry.element, list.children[index] || null);
    });
    for (const [id, entry] of this.cards) {
      if (!keep.has(id)) {
        entry.element.remove();
        this.cards.delete(id);
      }
    }
    tickCountdowns();
  },
};
views.imports = importView;

function jobCard(job) {
  const counts = Object.entries(job.progress || {}).map(([entity, n]) => `${entity.replaceAll("_", " ")} ${n}`);
  const active = ["queued", "running", "waiting_rate_limit", "waiting_budget"].includes(job.state);
  const actions = [];
  if (active) {
    actions.push(h("button", { type: "button", class: "secondary", "data-action": "cancel", onclick: () => jobAction(job, "cancel") }, "Cancel"));
  }
  if (job.state === "failed" || job.state === "cancelled") {
    actions.push(h("button", { type: "button", "data-action": "retry", onclick: () => jobAction(job, "retry") }, "Retry"));
  }
  return h(
    "li",
    { class: "card", "data-job": job.id, "data-state": job.state },
    h("h2", {}, job.repository.full_name),
    h("p", {}, badge(job.state.replaceAll("_", " "), stateTone(job.state)), " ", h("span", { class: "hint" }, job.provider)),
    h(
      "p",
      { class: "progress" },
      job.state === "completed" ? "Done" : `Step: ${job.step.replaceAll("_", " ")}`,
      counts.length ? ` · ${counts.join(" · ")}` : "",
    ),
    job.state === "waiting_rate_limit" && job.waiting_until
      ? h("p", { class: "progress" }, "Bitbucket is rate limiting; retrying in ", h("span", { "data-until": job.waiting_until }, ""), ".")
      : null,
    job.state === "waiting_budget" && job.waiting_until
      ? h("p", { class: "progress" }, "Waiting for room in your Bitbucket allowance; resumes in ", h("span", { "data-until": job.waiting_until }, ""), ".")
      : null,
    job.error ? h("p", { class: "badge bad" }, `${job.error.reason || "error"}: ${job.error.message}`) : null,
    webhookBlock(job),
    job.snapshot
      ? h(
          "div",
          { class: "copyrow" },
          h("span", {}, "Snapshot: ", h("code", {}, `s3://${job.snapshot.bucket}/${job.snapshot.prefix}`)),
          copyButton("location", async () => `s3://${job.snapshot.bucket}/${job.snapshot.prefix}`),
        )
      : null,
    actions.length ? h("div", { class: "actions" }, actions) : null,
  );
}

function webhookBlock(job) {
  const hook = job.webhook;
  if (!hook) return null;
  if (hook.status === "installed") return h("p", {}, badge("Webhook installed", "ok"));
  if (hook.status === "failed") return h("p", {}, badge("Webhook failed", "bad"), " ", hook.reason || "");
  return h(
    "div",
    { class: "manual" },
    h("p", {}, badge("Webhook: add it by hand", "warn"), " ", hook.reason || ""),
    h("p", {}, "In the repository's webhook settings on Bitbucket, add this URL:"),
    h("div", { class: "copyrow" }, h("code", {}, hook.url || ""), copyButton("URL", async () => hook.url || "")),
    h("p", {}, "Tick these events:"),
    h("ul", {}, (hook.events || []).map((event) => h("li", {}, h("code", {}, event)))),
    hook.secret_visible
      ? h(
          "div",
          { class: "copyrow" },
          h("span", {}, "and paste the secret:"),
          copyButton("secret", async () => (await api("GET", `/api/imports/${encodeURIComponent(job.id)}/webhook-secret`)).secret),
        )
      : h("p", { class: "hint" }, "The secret is shown to the person who started this import and to admins."),
  );
}

async function jobAction(job, action) {
  try {
    await api("POST", `/api/imports/${encodeURIComponent(job.id)}/${action}`);
    announce(action === "cancel" ? `Cancelled the import of ${job.repository.full_name}.` : `Retrying the import of ${job.repository.full_name}.`);
  } catch (error) {
    fail(error);
  }
  importView.refresh();
}

function tickCountdowns() {
  for (const el of document.querySelectorAll("[data-until]")) {
    const seconds = Math.max(0, Math.ceil((new Date(el.dataset.until).getTime() - Date.now()) / 1000));
    el.textContent = `${seconds} s`;
  }
}
setInterval(tickCountdowns, 1000);

// ------------------------------------------------------------------ activity

views.activity = {
  timer: null,
  show() {
    this.refresh();
  },
  async refresh() {
    clearTimeout(this.timer);
    try {
      const { events } = await api("GET", "/api/activity");
      $("activity-empty").hidden = events.length > 0;
      $("activity-table").hidden = events.length === 0;
      $("activity-rows").replaceChildren(
        ...events.map((event) =>
          h(
            "tr",
            { "data-event": event.id },
            h("td", { "data-label": "Time" }, when(event.occurred_at)),
            h("td", { "data-label": "Event" }, h("code", {}, event.type)),
            h("td", { "data-label": "Repository" }, event.repository),
            h("td", { "data-label": "Actor" }, event.actor || ""),
            h("td", { "data-label": "Detail" }, event.summary || ""),
          ),
        ),
      );
    } catch (error) {
      fail(error);
    }
    if (!$("view-activity").hidden) this.timer = setTimeout(() => this.refresh(), POLL_ACTIVITY_MS);
  },
};

// ------------------------------------------------------------------ admin

views.admin = {
  async show() {
    try {
      const { providers } = await api("GET", "/api/admin/providers");
      $("provider-list").replaceChildren(
        ...providers.map((p) =>
          h(
            "li",
            { class: "card", "data-provider": p.id },
            h("h2", {}, p.label),
            h("p", {}, badge(p.status, { verified: "ok", failed: "bad", pending: "warn" }[p.status] || ""), " ", h("code", {}, p.id)),
            p.status_detail ? h("p", { class: "hint" }, p.status_detail) : null,
            h(
              "dl",
              { class: "facts" },
              h("dt", {}, "Flavor"),
              h("dd", {}, p.flavor),
              h("dt", {}, "Bitbucket"),
              h("dd", {}, p.web_url),
              h("dt", {}, "Sign-in"),
              h("dd", {}, p.sign_in ? "on" : "off"),
              h("dt", {}, "Imports"),
              h("dd", {}, p.imports ? "on" : "off"),
              h("dt", {}, "Callback URL"),
              h("dd", {}, h("code", {}, p.callback_url)),
            ),
            h(
              "div",
              { class: "actions" },
              copyButton("callback URL", async () => p.callback_url),
              h("a", { class: "button", href: connectUrl(p.id, "verify") }, "Verify"),
            ),
          ),
        ),
      );
    } catch (error) {
      fail(error);
    }
    this.budgets();
  },

  async budgets() {
    try {
      const { budgets, now } = await api("GET", "/api/admin/budgets");
      $("budgets-empty").hidden = budgets.length > 0;
      $("budget-table").hidden = budgets.length === 0;
      $("budget-rows").replaceChildren(...budgets.map((b) => budgetRow(b, now)));
    } catch (error) {
      fail(error);
    }
  },
};

function budgetRow(b, now) {
  const per = b.model === "window" ? `per ${b.window_seconds} s` : `refill ${b.refill_per_second}/s`;
  const limit = !b.limited ? "off" : b.ceiling_until ? `${b.ceiling} of ${b.limit} (held after a 429)` : `${b.limit} ${per}`;
  const waiting = Object.entries(b.waiting || {}).map(
    ([priority, w]) => `${priority.replaceAll("_", " ")}: ${w.waiters} until ${Math.max(0, Math.round(w.until - now))} s from now`,
  );
  return h(
    "tr",
    { "data-budget": `${b.provider}/${b.user_id || "consumer"}/${b.class}` },
    h("td", { "data-label": "Person" }, b.person || b.user_id || "OAuth consumer"),
    h("td", { "data-label": "Provider" }, b.provider),
    h("td", { "data-label": "Class" }, b.class),
    h("td", { "data-label": "Used" }, b.limited ? String(b.used) : "-"),
    h("td", { "data-label": "Limit" }, limit),
    h("td", { "data-label": "429s" }, String(b.rejected)),
    h("td", { "data-label": "Waiting" }, waiting.join("; ") || "-"),
  );
}

// ------------------------------------------------------------------ start

$("who").textContent = state.user.display_name || state.user.email || "";
$("admin-tab").hidden = !state.admin;
$("sign-out").addEventListener("click", async () => {
  try {
    await api("POST", "/api/logout");
  } finally {
    location.assign("/");
  }
});
$("repo-provider").addEventListener("change", (event) => {
  repoView.provider = event.target.value;
  repoView.load(false);
});
let searchTimer = null;
$("repo-search").addEventListener("input", (event) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    repoView.query = event.target.value.trim();
    repoView.load(false);
  }, 300);
});
$("repo-more").addEventListener("click", () => repoView.load(true));
$("repo-clear").addEventListener("click", () => {
  repoView.selected.clear();
  for (const box of document.querySelectorAll("#repo-groups input[type=checkbox]")) box.checked = false;
  repoView.renderSelection();
});
$("repo-import").addEventListener("click", () => repoView.importSelected());
window.addEventListener("hashchange", () => {
  show(location.hash.slice(1));
  $("main").focus(); // keyboard and screen-reader users continue in the screen they opened
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && !$("view-imports").hidden) importView.refresh();
});
show(location.hash.slice(1));
