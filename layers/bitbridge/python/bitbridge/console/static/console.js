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
    this.code = err.code || null;
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
  const text = `Copy ${label}`;
  return h(
    "button",
    {
      type: "button",
      class: "secondary",
      "data-action": `copy-${label.replaceAll(" ", "-")}`,
      onclick: async (event) => {
        const button = event.currentTarget;
        try {
          await navigator.clipboard.writeText(await getText());
          // Said on the button (and to screen readers), so the notice or card holding it stays as it is.
          button.textContent = "Copied";
          $("live").textContent = `${label} copied to the clipboard.`;
          setTimeout(() => (button.textContent = text), 2000);
        } catch (error) {
          if (error instanceof ApiError) return fail(error);
          announce(`Could not use the clipboard; select the text and copy it by hand.`, true);
        }
        button.focus();
      },
    },
    text,
  );
}

const connectUrl = (providerId, purpose = "connect", back = "/#connections") =>
  `/auth/${encodeURIComponent(providerId)}/authorize?purpose=${purpose}&return_to=${encodeURIComponent(back)}`;

const connectionOf = (providerId) => state.connections.find((c) => c.provider === providerId);
const providerOf = (providerId) => state.providers.find((p) => p.id === providerId);

// ------------------------------------------------------------------ views (tabs)

const views = {};
function show(name) {
  announce("");
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

// Why a connection needs its person again, as a sentence first (bitbridge's detail and the code follow).
const RECONNECT_REASONS = {
  refresh_answer_lost: "Bitbucket renewed this connection's access, but its answer never reached bitbridge: reconnect to restore it.",
  refresh_token_refused: "Bitbucket no longer accepts this connection (revoked, expired, or the app's access removed): reconnect it.",
  refresh_scope_refused: "Bitbucket refused this connection's permissions: reconnect to grant them again.",
};

function connectionWhy(conn, outdated) {
  if (conn.status === "reauth_required") {
    const sentence = RECONNECT_REASONS[conn.reason] || "Bitbucket no longer accepts this connection: reconnect it.";
    return problemBlock(sentence, conn.status_detail, conn.reason);
  }
  if (!outdated) return null;
  return h(
    "div",
    { class: "retrying", "data-why": "scopes_outdated" },
    h("p", {}, `bitbridge now asks for ${conn.missing_scopes.join(", ")}, which this connection was not granted.`),
    h("p", { class: "hint" }, "It keeps working with what it has; reconnect to grant the rest."),
  );
}

views.connections = {
  show() {
    const list = $("connection-list");
    list.replaceChildren(
      ...state.providers.map((provider) => {
        const conn = connectionOf(provider.id);
        const status = conn ? conn.status : "not_connected";
        const outdated = status === "active" && Boolean(conn?.scopes_outdated);
        const tone = outdated ? "warn" : { active: "ok", reauth_required: "warn" }[status] || "";
        const label = outdated
          ? "New permissions needed"
          : { active: "Active", reauth_required: "Reconnect needed", not_connected: "Not connected" }[status];
        const actions = [];
        if (!conn && provider.imports) {
          actions.push(h("a", { class: "button", href: connectUrl(provider.id) }, "Connect"));
        }
        if (conn && (status === "reauth_required" || outdated)) {
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
          conn ? connectionWhy(conn, outdated) : null,
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
    announce(disconnected(answer));
    repoView.reset();
  } catch (error) {
    fail(error);
  }
}

function disconnected(answer) {
  const commands = answer.webhooks.remove_commands || [];
  const one = commands.length === 1;
  return h(
    "div",
    { class: "notice" },
    h("p", {}, answer.message),
    commands.length
      ? [
          h("p", {}, `${one ? "Its webhook keeps" : `Its ${commands.length} webhooks keep`} delivering events. To remove ${one ? "it" : "them"}, connect again, then an admin runs:`),
          h("div", { class: "copyrow" }, h("pre", {}, h("code", {}, commands.join("\n"))), copyButton(one ? "command" : "commands", async () => commands.join("\n"))),
        ]
      : null,
    h("details", {}, h("summary", {}, "Revoke bitbridge's access on Bitbucket too"), h("p", {}, answer.revocation)),
  );
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
    const provider = this.provider;
    const names = [...this.selected.keys()];
    $("repo-import").disabled = true;
    importView.ask(provider, names); // a queued card for each at once, before any answer
    location.hash = "#imports";
    let count = 0;
    try {
      // POST /api/imports takes at most 20 repositories (its 400 says so): a larger selection goes in parts.
      for (let i = 0; i < names.length; i += 20) {
        const part = names.slice(i, i + 20);
        let jobs;
        try {
          jobs = (await api("POST", "/api/imports", { provider, repositories: part })).imports;
        } catch (error) {
          importView.refuse(provider, names.slice(i), error); // this part, and the parts never sent
          throw error;
        }
        importView.answer(provider, part, jobs);
        for (const name of part) this.selected.delete(name);
        this.loaded = false; // the list shows each repository's import state: read it again
        count += jobs.length;
      }
      announce(`Import started for ${count} ${count === 1 ? "repository" : "repositories"}.`);
    } catch (error) {
      fail(error); // what was not started stays selected under Repositories
    }
    this.renderSelection();
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

const ACTIVE = ["queued", "running", "waiting_rate_limit", "waiting_budget"];
const askedKey = (provider, fullName) => `${provider}\n${fullName}`;

// What a person reads first when an import stops (the message and the code follow it).
const FAILURES = {
  not_found: "Bitbucket no longer finds this repository, or your account can no longer see it.",
  forbidden: "Your Bitbucket account may no longer read this repository.",
  reauth_required: "Your Bitbucket connection must be renewed: reconnect it under Connections, then retry.",
  bitbucket_error: "Bitbucket answered in a way bitbridge did not expect, so the import stopped.",
  bitbucket_unavailable:
    "Bitbucket kept failing, so the import stopped after its retries. Retry once Bitbucket answers again: what was already imported is kept.",
  internal: "The import failed on bitbridge's side; retrying usually works.",
};

const importView = {
  cards: new Map(), // card key (a job id, or "asked:" + provider + name) -> {signature, element}
  listed: [], // the jobs of the last GET /api/imports
  answered: new Map(), // job id -> job: answers to "Import selected", shown until the list has them
  asked: new Map(), // askedKey -> {provider, full_name, refused}: asked for, not answered yet (or refused)
  timer: null,
  seq: 0,

  show() {
    this.render(); // at once from what is known: a new request's cards need no answer to appear
    this.refresh();
  },

  ask(provider, names) {
    for (const name of names) this.asked.set(askedKey(provider, name), { provider, full_name: name, refused: null });
  },

  answer(provider, names, jobs) {
    for (const name of names) this.asked.delete(askedKey(provider, name));
    for (const job of jobs) this.answered.set(job.id, job);
    this.render();
  },

  refuse(provider, names, error) {
    const listed = new Map(((error.body.error || {}).repositories || []).map((r) => [r.repository, r.status]));
    for (const name of names) {
      const entry = this.asked.get(askedKey(provider, name));
      if (entry) entry.refused = { error, status: listed.get(name) ?? null, others: listed.size > 0 && !listed.has(name) };
    }
    this.render();
  },

  dismiss(key) {
    this.asked.delete(key);
    this.render();
  },

  items() {
    const listedIds = new Set(this.listed.map((j) => j.id));
    return [
      ...[...this.asked].map(([key, asked]) => ({ key: `asked:${key}`, askedKey: key, asked })),
      ...[...this.answered.values()].filter((j) => !listedIds.has(j.id)).map((job) => ({ key: job.id, job })),
      ...this.listed.map((job) => ({ key: job.id, job })),
    ];
  },

  busy() {
    return this.items().some((item) => (item.job ? ACTIVE.includes(item.job.state) : !item.asked.refused));
  },

  async refresh() {
    clearTimeout(this.timer);
    const seq = ++this.seq; // only the newest refresh renders and schedules the next
    let listed = null;
    try {
      listed = (await api("GET", "/api/imports?limit=50")).imports;
      const ids = new Set(listed.map((j) => j.id));
      // An answered job not in the list is another user's import this user joined: polled on its own.
      const joined = [...this.answered.values()].filter((j) => !ids.has(j.id) && ACTIVE.includes(j.state));
      const polled = await Promise.all(joined.map((j) => api("GET", `/api/imports/${encodeURIComponent(j.id)}`)));
      if (seq !== this.seq) return;
      for (const id of ids) this.answered.delete(id);
      for (const job of polled) this.answered.set(job.id, job);
    } catch (error) {
      if (seq !== this.seq) return;
      fail(error);
    }
    if (listed) this.listed = listed;
    this.render();
    if (!$("view-imports").hidden && this.busy()) this.timer = setTimeout(() => this.refresh(), POLL_ACTIVE_MS);
  },

  render() {
    const items = this.items();
    $("imports-empty").hidden = items.length > 0;
    const list = $("import-list");
    const keep = new Set();
    items.forEach((item, index) => {
      keep.add(item.key);
      const job = item.job;
      const signature = JSON.stringify(
        job
          ? [job.state, job.step, job.progress, job.webhook, job.error, job.waiting_until, job.retrying, job.snapshot, job.started_at, job.finished_at]
          : [item.asked.refused && item.asked.refused.error.message],
      );
      let entry = this.cards.get(item.key);
      if (!entry || entry.signature !== signature) {
        const element = job ? jobCard(job) : askedCard(item.askedKey, item.asked);
        if (entry) {
          const focused = entry.element.contains(document.activeElement) && document.activeElement.dataset.action;
          entry.element.replaceWith(element);
          if (focused) element.querySelector(`[data-action="${focused}"]`)?.focus();
        }
        entry = { signature, element };
        this.cards.set(item.key, entry);
      }
      if (list.children[index] !== entry.element) list.insertBefore(entry.element, list.children[index] || null);
    });
    for (const [key, entry] of this.cards) {
      if (!keep.has(key)) {
        entry.element.remove();
        this.cards.delete(key);
      }
    }
    tickCountdowns();
  },
};
views.imports = importView;

const providerLabel = (providerId) => providerOf(providerId)?.label || providerId;

function problemBlock(sentence, message, code) {
  return h(
    "div",
    { class: "problem" },
    h("p", { class: "problem-what" }, sentence),
    message && message !== sentence ? h("p", { class: "problem-detail" }, message) : null,
    code ? h("p", { class: "problem-code" }, "Code: ", h("code", {}, code)) : null,
  );
}

// A repository asked for whose request has not answered yet (queued), or was refused (nothing started).
function askedCard(key, asked) {
  const refused = asked.refused;
  let sentence = null;
  if (refused) {
    sentence =
      refused.status === 404
        ? "Bitbucket does not find this repository, or your account cannot see it: nothing was started."
        : refused.status === 403
          ? "Your Bitbucket account may not read this repository: nothing was started."
          : refused.others
            ? "Not started: another repository in the same request was refused (a request starts all of its imports or none)."
            : "The import could not start.";
  }
  return h(
    "li",
    { class: "card", "data-asked": asked.full_name, "data-state": refused ? "refused" : "queued" },
    h("h2", {}, asked.full_name),
    h("p", {}, badge(refused ? "not started" : "queued", refused ? "bad" : "info"), " ", h("span", { class: "hint" }, providerLabel(asked.provider))),
    refused
      ? problemBlock(sentence, refused.status || refused.others ? null : refused.error.message, refused.error.code)
      : h("p", { class: "progress" }, "Checking access on Bitbucket…"),
    refused
      ? h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", "data-action": "dismiss", onclick: () => importView.dismiss(key) }, "Dismiss"))
      : null,
  );
}

function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toDateString() === new Date().toDateString() ? date.toLocaleTimeString() : date.toLocaleString();
}

function timeOf(iso) {
  return h("time", { datetime: iso }, clock(iso));
}

function duration(fromIso, toIso) {
  const seconds = Math.max(0, Math.round((new Date(toIso) - new Date(fromIso)) / 1000));
  return seconds < 120 ? `${seconds} s` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

function timesLine(job) {
  const parts = [["Asked", job.created_at]];
  if (job.started_at) parts.push(["started", job.started_at]);
  if (job.finished_at) parts.push([job.state === "completed" ? "finished" : job.state, job.finished_at]);
  const line = parts.flatMap(([label, iso], i) => [i ? " · " : "", `${label} `, timeOf(iso)]);
  if (job.finished_at) line.push(` (took ${duration(job.started_at || job.created_at, job.finished_at)})`);
  return h("p", { class: "times" }, line);
}

function retryingBlock(job) {
  const retry = job.retrying;
  if (!retry) return null;
  const times = retry.failures === 1 ? "once" : `${retry.failures} times in a row`;
  return h(
    "div",
    { class: "retrying" },
    h(
      "p",
      {},
      badge(`Retry ${retry.failures} of ${retry.limit}`, "warn"),
      ` Bitbucket failed ${times}; next attempt at `,
      timeOf(retry.next_attempt_at),
      " (",
      h("span", { "data-until": retry.next_attempt_at }, ""),
      ").",
    ),
    retry.error ? h("p", { class: "problem-detail" }, `Last error: ${retry.error}`) : null,
  );
}

function jobCard(job) {
  const counts = Object.entries(job.progress || {}).map(([entity, n]) => `${entity.replaceAll("_", " ")} ${n}`);
  const actions = [];
  if (ACTIVE.includes(job.state)) {
    actions.push(h("button", { type: "button", class: "secondary", "data-action": "cancel", onclick: () => jobAction(job, "cancel") }, "Cancel"));
  }
  if (job.state === "failed" || job.state === "cancelled") {
    actions.push(h("button", { type: "button", "data-action": "retry", onclick: () => jobAction(job, "retry") }, "Retry"));
  }
  return h(
    "li",
    { class: "card", "data-job": job.id, "data-state": job.state },
    h("h2", {}, job.repository.full_name),
    h("p", {}, badge(job.state.replaceAll("_", " "), stateTone(job.state)), " ", h("span", { class: "hint" }, providerLabel(job.provider))),
    h(
      "p",
      { class: "progress" },
      job.state === "completed" ? "Done" : `${ACTIVE.includes(job.state) ? "Step" : "Stopped at"}: ${job.step.replaceAll("_", " ")}`,
      counts.length ? ` · ${counts.join(" · ")}` : "",
    ),
    job.state === "waiting_rate_limit" && job.waiting_until
      ? h(
          "p",
          { class: "progress" },
          "Bitbucket is rate limiting; next attempt at ",
          timeOf(job.waiting_until),
          " (",
          h("span", { "data-until": job.waiting_until }, ""),
          ").",
        )
      : null,
    job.state === "waiting_budget" && job.waiting_until
      ? h(
          "p",
          { class: "progress" },
          "Waiting for room in your Bitbucket allowance; resumes at ",
          timeOf(job.waiting_until),
          " (",
          h("span", { "data-until": job.waiting_until }, ""),
          ").",
        )
      : null,
    ACTIVE.includes(job.state) ? retryingBlock(job) : null,
    job.error ? problemBlock(FAILURES[job.error.reason] || "The import failed.", job.error.message, job.error.reason) : null,
    webhookBlock(job),
    job.snapshot
      ? h(
          "div",
          { class: "copyrow" },
          h("span", {}, "Snapshot: ", h("code", {}, `s3://${job.snapshot.bucket}/${job.snapshot.prefix}`)),
          copyButton("location", async () => `s3://${job.snapshot.bucket}/${job.snapshot.prefix}`),
        )
      : null,
    timesLine(job),
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
    const seconds = Math.ceil((new Date(el.dataset.until).getTime() - Date.now()) / 1000);
    el.textContent = seconds > 0 ? `in ${seconds} s` : "now";
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
            h("p", { class: "hint status-note" }, providerStatus(p)),
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
              h("a", { class: "button", href: connectUrl(p.id, "verify", "/#admin") }, "Verify"),
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

function providerStatus(p) {
  if (p.status === "verified") {
    return p.verified_at ? ["Verified ", timeOf(p.verified_at), ": an OAuth round trip with this configuration worked."] : "Verified.";
  }
  if (p.status === "pending") {
    return "Not verified yet: no OAuth round trip (sign-in, connect or Verify) has completed since it was added or changed. Press Verify to prove its callback URL and credentials.";
  }
  return p.status_detail ? [p.status_detail, " Fix it, then press Verify."] : "The last round trip failed: fix the configuration, then press Verify.";
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
