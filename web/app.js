// The upload page: a list of files, each uploaded with the tus client in tus.js, with a bar that
// separates "sent to the server" from "stored in Notion" (the latter from the relay's status
// endpoint), pause / resume / cancel, and resume after a reload through localStorage.

import { MIB, Upload } from "./tus.js";

const MAX_PARALLEL = 3; // uploads at once; with the status poller that stays under 6 connections
const MAX_CHUNK = 8 * MIB; // each PATCH ends well inside a 30 s router window
const FALLBACK_CHUNK = 5 * MIB; // Notion's smallest part: never above any upload's part size
const POLL_MS = 1000;
const STORAGE_PREFIX = "notion-relay/upload/";
const TOKEN_KEY = "notion-relay/token";
const REMEMBER_MS = 24 * 3600 * 1000; // when the server gave no expiry

const ENDPOINT = new URL("files/", document.baseURI).href;
const statusUrl = (id) => new URL(`api/upload/status/${encodeURIComponent(id)}`, document.baseURI).href;

const $ = (selector) => document.querySelector(selector);
const fileInput = $("#file-input");
const dropzone = $("#dropzone");
const tokenInput = $("#token-input");
const list = $("#uploads");
const startButton = $("#start");
const clearButton = $("#clear");

// --- remembered uploads (localStorage) ------------------------------------------------------

const memory = {
  key(file) {
    return STORAGE_PREFIX + JSON.stringify([file.name, file.size, file.lastModified]);
  },
  read(key) {
    try {
      const entry = JSON.parse(localStorage.getItem(key) || "null");
      if (!entry || typeof entry.url !== "string") return null;
      if (entry.expiresAt && entry.expiresAt < Date.now()) {
        localStorage.removeItem(key);
        return null;
      }
      return entry;
    } catch {
      return null;
    }
  },
  save(file, url, expires) {
    const expiresAt = Date.parse(expires || "") || Date.now() + REMEMBER_MS;
    const entry = { url, name: file.name, size: file.size, lastModified: file.lastModified, expiresAt };
    try {
      localStorage.setItem(memory.key(file), JSON.stringify(entry));
    } catch {
      // Storage full or disabled: the upload still works, it just cannot resume after a reload.
    }
  },
  forget(key) {
    try {
      localStorage.removeItem(key);
    } catch {
      /* nothing to do */
    }
  },
  all() {
    const entries = [];
    try {
      for (let i = 0; i < localStorage.length; i += 1) {
        const key = localStorage.key(i);
        if (!key || !key.startsWith(STORAGE_PREFIX)) continue;
        const entry = memory.read(key);
        if (entry) entries.push({ key, ...entry });
      }
    } catch {
      /* storage disabled */
    }
    return entries;
  },
};

// --- the upload token -----------------------------------------------------------------------

function loadToken() {
  try {
    tokenInput.value = localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    tokenInput.value = "";
  }
  if (tokenInput.value) $("#token-box").open = false;
}

function saveToken() {
  try {
    const value = tokenInput.value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token is used for this visit only */
  }
}

function authHeaders() {
  const token = tokenInput.value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// --- words ----------------------------------------------------------------------------------

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MIB) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 * MIB) return `${(bytes / MIB).toFixed(1)} MiB`;
  return `${(bytes / (1024 * MIB)).toFixed(2)} GiB`;
}

function percent(part, whole) {
  if (!whole) return 0;
  return Math.min(100, Math.floor((1000 * part) / whole) / 10);
}

// A failure from tus.js, in plain words. The relay's own messages (`body.error`) are written
// for people, so they are quoted where they add something.
export function explain(failure) {
  const server = failure.body && typeof failure.body.error === "string" ? failure.body.error : "";
  const because = server ? `: ${server}` : ".";
  switch (failure.kind) {
    case "network":
      return "The connection to the server was lost (the network is down or the server is restarting).";
    case "stalled":
      return "The connection stalled: no data moved for a minute.";
    case "timeout":
      return "The server did not answer in time.";
    case "protocol":
      return `The server's answer could not be understood (${failure.message}).`;
    case "aborted":
      return "The upload was stopped.";
    default:
      break;
  }
  switch (failure.status) {
    case 400:
      if (failure.body?.code === "rejected_by_notion") return `Notion refused this file${because}`;
      return `The server refused this upload as invalid${because}`;
    case 401:
    case 403:
      return "Your upload token was not accepted. Check it under “Upload token”, then press Retry.";
    case 404:
    case 410:
      return "The server no longer has this upload (it expired after an hour, or it was cancelled).";
    case 409:
      return "The server holds a different part of this file than expected; checking where to continue.";
    case 412:
      return "The server speaks a different version of the upload protocol, so this page cannot use it.";
    case 413:
      return `This file is too large for the Notion workspace${because}`;
    case 415:
      if (failure.phase === "create") return `Notion does not accept this kind of file${because}`;
      return "The server refused the data as this page sent it (a problem in the page, not in your file).";
    case 423:
      return "The server is still busy with an earlier piece of this file.";
    case 429:
      return `Too many requests right now${because}`;
    case 460:
      return "A piece of the file was damaged on the way; it will be sent again.";
    case 500:
      return "The server ran into an internal problem. What it received is kept.";
    case 502:
      return server ? `Notion could not take the file: ${server}` : "The server could not reach Notion.";
    case 503:
      return `Notion or the server is busy or unavailable for a moment${because}`;
    case 504:
      return "A gateway between you and the server gave up waiting.";
    default:
      return `The server answered with an error (HTTP ${failure.status})${because}`;
  }
}

const LABELS = {
  ready: "Ready",
  resumable: "Ready to resume",
  queued: "Waiting for its turn",
  connecting: "Connecting",
  uploading: "Sending",
  retrying: "Retrying",
  paused: "Paused",
  finishing: "Finishing in Notion…",
  done: "Stored in Notion",
  error: "Failed",
  cancelled: "Cancelled",
};
const POLLED = new Set(["connecting", "uploading", "retrying", "finishing", "paused"]);
const FINISHED = new Set(["done", "cancelled"]);

function announce(text) {
  const announcer = $("#announcer");
  announcer.textContent = "";
  // A fresh text node so screen readers read it even when the words repeat.
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

// Something about the choice of files itself (not one upload): shown under the drop zone.
function notify(text) {
  const notice = $("#notice");
  notice.textContent = text;
  notice.hidden = !text;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// --- one file -------------------------------------------------------------------------------

const items = [];

class Item {
  constructor(file) {
    this.file = file;
    this.key = memory.key(file);
    this.sent = 0;
    this.confirmed = 0;
    this.retryAt = 0;
    this.retryText = "";
    const remembered = memory.read(this.key);
    this.upload = new Upload(file, {
      endpoint: ENDPOINT,
      url: remembered?.url,
      headers: authHeaders,
      chunkSize: FALLBACK_CHUNK,
      metadata: { filename: file.name, filetype: file.type || "" },
      onEvent: (type, detail) => this.onEvent(type, detail),
    });
    this.build();
    this.setState(remembered ? "resumable" : "ready");
    if (file.size === 0) this.fail("Empty files cannot be stored in Notion.");
    else if (remembered) this.peek();
  }

  // A remembered upload: show what the server already has before it continues.
  async peek() {
    const doc = await fetchStatus(this.uploadId);
    if (!doc || this.state !== "resumable") return;
    this.takeStatus(doc);
    if (this.state === "resumable" && this.sent > 0) {
      this.messageEl.textContent = `${formatBytes(this.sent)} already on the server; it continues from there.`;
    }
  }

  get uploadId() {
    const url = this.upload.url;
    return url ? decodeURIComponent(new URL(url).pathname.split("/").filter(Boolean).pop()) : null;
  }

  build() {
    const name = this.file.name;
    this.stateEl = element("span", { className: "state" });
    this.sentBar = element("div", { className: "bar-sent" });
    this.storedBar = element("div", { className: "bar-stored" });
    this.bar = element("div", {
      className: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-label": `Stored in Notion: ${name}`,
    }, this.sentBar, this.storedBar);
    this.numbersEl = element("p", { className: "numbers" });
    this.messageEl = element("p", { className: "message" });
    this.resultEl = element("div", { className: "result", hidden: "" });
    this.buttons = {
      pause: element("button", { type: "button", text: "Pause", "aria-label": `Pause ${name}` }),
      resume: element("button", { type: "button", text: "Resume", "aria-label": `Resume ${name}` }),
      retry: element("button", { type: "button", text: "Retry", "aria-label": `Retry ${name}` }),
      cancel: element("button", { type: "button", text: "Cancel", "aria-label": `Cancel ${name}` }),
      remove: element("button", { type: "button", text: "Remove", "aria-label": `Remove ${name} from the list` }),
    };
    this.buttons.pause.addEventListener("click", () => this.pause());
    this.buttons.resume.addEventListener("click", () => this.queue());
    this.buttons.retry.addEventListener("click", () => this.queue());
    this.buttons.cancel.addEventListener("click", () => this.cancel());
    this.buttons.remove.addEventListener("click", () => this.remove());
    this.el = element("li", { className: "upload" },
      element("div", { className: "upload-head" },
        element("span", { className: "name", text: name, title: name }),
        element("span", { className: "size", text: formatBytes(this.file.size) }),
        this.stateEl),
      this.bar,
      this.numbersEl,
      this.messageEl,
      this.resultEl,
      element("div", { className: "actions" }, ...Object.values(this.buttons)));
  }

  setState(state, message = "") {
    this.state = state;
    this.el.dataset.state = state;
    this.stateEl.textContent = LABELS[state];
    if (state !== "retrying") this.retryAt = 0;
    this.messageEl.textContent = message;
    const b = this.buttons;
    const known = Boolean(this.upload.url); // the server has (part of) this file
    b.pause.hidden = !["connecting", "uploading", "retrying"].includes(state);
    b.resume.hidden = state !== "paused";
    b.retry.hidden = state !== "error" || this.file.size === 0;
    b.cancel.hidden = !(["queued", "connecting", "uploading", "retrying", "paused"].includes(state)
      || (state === "error" && known));
    b.remove.hidden = !(["ready", "resumable", "done", "cancelled"].includes(state)
      || (state === "error" && !known));
    if (this.upload.url) this.el.dataset.uploadId = this.uploadId;
    this.render();
    refreshToolbar();
  }

  render() {
    const size = this.file.size;
    const sentPct = percent(this.sent, size);
    const storedPct = percent(this.confirmed, size);
    this.sentBar.style.width = `${sentPct}%`;
    this.storedBar.style.width = `${storedPct}%`;
    this.bar.setAttribute("aria-valuenow", String(storedPct));
    this.bar.setAttribute("aria-valuetext", `${storedPct}% stored in Notion, ${sentPct}% sent`);
    this.numbersEl.textContent = size
      ? `Sent ${formatBytes(this.sent)} of ${formatBytes(size)} (${sentPct}%) · `
        + `stored in Notion ${formatBytes(this.confirmed)} (${storedPct}%)`
      : "";
    if (this.state === "retrying" && this.retryAt) {
      const seconds = Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000));
      this.messageEl.textContent = seconds > 0
        ? `${this.retryText} Trying again in ${seconds} s.`
        : `${this.retryText} Trying again now…`;
    }
  }

  onEvent(type, detail) {
    switch (type) {
      case "created":
        memory.save(this.file, detail.url, detail.expires);
        this.el.dataset.uploadId = this.uploadId;
        refreshEarlier();
        return undefined;
      case "ready":
        return this.learnPartSize();
      case "progress":
        this.sent = detail.sent;
        if (["connecting", "retrying"].includes(this.state)) this.setState("uploading");
        else this.render();
        return undefined;
      case "finishing":
        if (this.state !== "done") this.setState("finishing");
        return undefined;
      case "retrying":
        this.retryText = explain(detail.failure);
        this.retryAt = Date.now() + detail.waitS * 1000;
        this.setState("retrying"); // render() writes the countdown
        return undefined;
      case "restarting":
        memory.forget(this.key);
        this.sent = 0;
        this.confirmed = 0;
        this.setState("connecting", `${explain(detail.failure)} Starting again from the beginning.`);
        announce(`${this.file.name}: the server no longer had the upload; starting again from the beginning.`);
        return undefined;
      case "complete":
        // The relay answers the last PATCH only once Notion holds the file; the status endpoint
        // confirms it and names the result.
        this.sent = this.file.size;
        if (this.state !== "done") this.setState("finishing");
        poller.soon();
        return undefined;
      case "failed":
        this.fail(explain(detail.failure), detail.failure.status);
        return undefined;
      default:
        return undefined;
    }
  }

  async learnPartSize() {
    const doc = await fetchStatus(this.uploadId);
    const partSize = doc && Number(doc.part_size);
    this.upload.chunkSize = partSize > 0 ? Math.min(MAX_CHUNK, partSize) : FALLBACK_CHUNK;
    if (doc) this.takeStatus(doc);
    if (this.state === "connecting") this.setState("uploading");
  }

  takeStatus(doc) {
    const held = Number(doc.offset); // bytes the server has: sent, whatever the page saw
    if (Number.isFinite(held)) this.sent = Math.max(this.sent, Math.min(held, this.file.size));
    const confirmed = Number(doc.bytes_confirmed);
    if (Number.isFinite(confirmed)) this.confirmed = Math.max(0, Math.min(confirmed, this.file.size));
    if (doc.status === "completed") {
      this.stored(doc);
      return;
    }
    if (doc.status === "finalizing" && this.state === "uploading") this.setState("finishing");
    else this.render();
  }

  stored(doc) {
    if (this.state === "done") return;
    this.upload.stop(); // in case the final answer was lost: the status already says it all
    memory.forget(this.key);
    this.sent = this.file.size;
    this.confirmed = this.file.size;
    this.setState("done");
    this.showResult(doc.notion || {});
    announce(`${this.file.name} is stored in Notion.`);
    refreshEarlier();
    pump();
  }

  showResult(notion) {
    const parts = [];
    const line = (label, value) => {
      if (!value) return;
      parts.push(element("div", {}, element("dt", { text: label }), element("dd", {}, element("code", { text: value }))));
    };
    line("Notion file upload id", notion.file_upload_id || this.upload.notionFileUploadId);
    line("Block id", notion.block_id);
    const dl = element("dl", {}, ...parts);
    this.resultEl.replaceChildren(dl);
    if (notion.page_id) {
      const page = String(notion.page_id).replace(/-/g, "");
      const block = notion.block_id ? `#${String(notion.block_id).replace(/-/g, "")}` : "";
      this.resultEl.append(element("a", {
        href: `https://www.notion.so/${page}${block}`, target: "_blank", rel: "noopener noreferrer",
        text: "Open the page in Notion",
      }));
    } else {
      this.resultEl.append(element("p", {
        className: "hint",
        text: "The file is uploaded but not attached to a page (the server has no target page set).",
      }));
    }
    this.resultEl.hidden = false;
  }

  fail(message, status = 0) {
    this.failedStatus = status;
    if (status === 401 || status === 403) $("#token-box").open = true;
    this.setState("error", message);
    announce(`${this.file.name}: ${message}`);
    pump();
  }

  queue() {
    if (this.file.size === 0) return;
    this.setState("queued");
    pump();
  }

  async run() {
    this.setState("connecting");
    await this.upload.start();
    pump();
  }

  pause() {
    this.upload.stop();
    this.setState("paused", "What the server already has is kept. Press Resume to go on.");
    pump();
  }

  async cancel() {
    const hadUpload = Boolean(this.upload.url);
    this.setState("cancelled", "Cancelling…");
    memory.forget(this.key);
    const discarded = await this.upload.terminate();
    if (this.state !== "cancelled") return;
    let words = "Cancelled before anything was sent.";
    if (hadUpload) {
      words = discarded
        ? "Cancelled. The server discarded what it had received."
        : "Cancelled here. The server could not be told; it discards the upload within an hour.";
    }
    this.setState("cancelled", words);
    refreshEarlier();
    pump();
  }

  remove() {
    this.upload.stop();
    const index = items.indexOf(this);
    if (index >= 0) items.splice(index, 1);
    this.el.remove();
    refreshToolbar();
    refreshEarlier();
  }
}

// --- scheduling and status polling ----------------------------------------------------------

function pump() {
  let running = items.filter((item) => item.upload.running || item.state === "connecting").length;
  for (const item of items) {
    if (running >= MAX_PARALLEL) break;
    if (item.state === "queued") {
      running += 1;
      item.run();
    }
  }
  refreshToolbar();
}

async function fetchStatus(id) {
  if (!id) return null;
  try {
    const response = await fetch(statusUrl(id), {
      headers: authHeaders(), cache: "no-store", signal: AbortSignal.timeout(10000),
    });
    if (!response.ok) return null;
    return await response.json();
  } catch {
    return null;
  }
}

// One loop for all files, one request at a time, so polling never competes with the uploads
// for the browser's six connections per server.
const poller = {
  timer: null,
  busy: false,
  soon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), 50);
  },
  async tick() {
    clearTimeout(this.timer);
    if (this.busy) return;
    this.busy = true;
    try {
      for (const item of [...items]) {
        if (!POLLED.has(item.state) || !item.uploadId) continue;
        const doc = await fetchStatus(item.uploadId);
        if (doc && doc.upload_id === item.uploadId) item.takeStatus(doc);
      }
    } finally {
      this.busy = false;
      this.timer = setTimeout(() => this.tick(), POLL_MS);
    }
  },
};

// --- the page -------------------------------------------------------------------------------

function refreshToolbar() {
  const startable = items.filter((item) => item.state === "ready" || item.state === "resumable").length;
  startButton.disabled = startable === 0;
  startButton.textContent = startable > 1 ? `Upload ${startable} files` : "Upload";
  clearButton.hidden = !items.some((item) => FINISHED.has(item.state));
  $("#empty").hidden = items.length > 0;
}

function refreshEarlier() {
  const open = new Set(items.filter((item) => !FINISHED.has(item.state)).map((item) => item.key));
  const entries = memory.all().filter((entry) => !open.has(entry.key));
  const earlierList = $("#earlier-list");
  earlierList.replaceChildren(...entries.map((entry) => {
    const discard = element("button", {
      type: "button", text: "Discard", "aria-label": `Discard the unfinished upload of ${entry.name}`,
    });
    discard.addEventListener("click", async () => {
      discard.disabled = true;
      const stale = new Upload({ name: entry.name, size: entry.size, type: "" }, {
        endpoint: ENDPOINT, url: entry.url, headers: authHeaders,
      });
      await stale.terminate();
      memory.forget(entry.key);
      refreshEarlier();
    });
    const modified = entry.lastModified ? `, modified ${new Date(entry.lastModified).toLocaleString()}` : "";
    return element("li", {},
      element("span", { className: "name", text: entry.name }),
      element("span", { className: "hint", text: ` ${formatBytes(entry.size)}${modified}` }),
      discard);
  }));
  $("#earlier").hidden = entries.length === 0;
}

function addFiles(files) {
  const repeated = [];
  for (const file of files) {
    const key = memory.key(file);
    if (items.some((item) => item.key === key && !FINISHED.has(item.state))) {
      repeated.push(file.name);
      continue;
    }
    const item = new Item(file);
    items.push(item);
    list.append(item.el);
  }
  notify(repeated.length ? `Already in the list: ${repeated.join(", ")}.` : "");
  refreshToolbar();
  refreshEarlier();
}

fileInput.addEventListener("change", () => {
  addFiles(Array.from(fileInput.files || []));
  fileInput.value = ""; // choosing the same file again fires "change" again
});

for (const type of ["dragenter", "dragover"]) {
  dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) {
  dropzone.addEventListener(type, () => dropzone.classList.remove("dragging"));
}
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  const transfer = event.dataTransfer;
  if (!transfer) return;
  // A dropped folder arrives as a File that cannot be read: leave it out and say so.
  const folders = new Set(Array.from(transfer.items || [])
    .filter((item) => item.kind === "file" && item.webkitGetAsEntry?.()?.isDirectory)
    .map((item) => item.getAsFile()?.name));
  const files = Array.from(transfer.files || []).filter((file) => !folders.has(file.name));
  addFiles(files);
  if (folders.size) notify(`Folders cannot be uploaded; choose the files inside them (left out: ${[...folders].join(", ")}).`);
});
// A file dropped beside the drop zone would make the browser open it and leave the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

startButton.addEventListener("click", () => {
  for (const item of items) {
    if (item.state === "ready" || item.state === "resumable") item.setState("queued");
  }
  pump();
});
clearButton.addEventListener("click", () => {
  for (const item of items.filter((entry) => FINISHED.has(entry.state))) item.remove();
});
tokenInput.addEventListener("input", saveToken);
$("#token-form").addEventListener("submit", (event) => {
  // Enter in the field: stay on the page, and uploads refused for the token try again.
  event.preventDefault();
  saveToken();
  for (const item of items) {
    if (item.state === "error" && [401, 403].includes(item.failedStatus)) item.queue();
  }
});
// Back online: skip the rest of any backoff wait.
window.addEventListener("online", () => items.forEach((item) => item.upload.wake()));

loadToken();
refreshToolbar();
refreshEarlier();
poller.soon();
// The retry countdowns.
setInterval(() => items.forEach((item) => item.state === "retrying" && item.render()), 1000);
