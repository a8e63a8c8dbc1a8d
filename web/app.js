// The upload page. Each file is uploaded with tus-js-client (window.tus, from
// static/vendor/tus.min.js) and shown with two bars: what the relay received, and what Notion
// holds (from the relay's status endpoint). Above that, the page adds:
//   - a total with speed and time left, in an action bar that stays in view;
//   - refusals before Upload is pressed, from the relay's own table (GET /api/limits);
//   - patience: a request that gets no answer in time is retried like any dropped connection,
//     with backoff (Retry-After honoured) and no limit on attempts, never taken for a user's stop;
//   - a decision per failure: retry by itself, ask for the upload token, "Start over" when the
//     relay says the upload cannot go on (410), or say why nothing will help (413, 415);
//   - resume after a reload: tus-js-client's fingerprint (name, type, size, modification time)
//     and its localStorage entries; choosing the same file again continues it;
//   - where files go: a picker when the relay lists more than one destination (GET
//     /api/destinations; the last choice is remembered), a caption (and a row's title) per file,
//     and a link to the page or row each finished file went to.

const tus = window.tus;

const MIB = 1024 * 1024;
const MAX_PARALLEL = 3; // uploads at once; with the status poller that stays under 6 connections
const MAX_CHUNK = 8 * MIB; // each PATCH ends well inside a 30 s router window
const FALLBACK_CHUNK = 5 * MIB; // Notion's smallest part: never above any upload's part size
const POLL_MS = 1000;
const TOKEN_KEY = "notion-relay/token";
const STORAGE_PREFIX = "tus::"; // tus-js-client's WebStorageUrlStorage
const FORGET_AFTER_MS = 24 * 3600 * 1000; // remembered uploads older than this are dropped
const RETRY_SLOTS = 10000; // tus-js-client stops after retryDelays.length attempts without progress
const MAX_WAIT_S = 300;

export const NOTION_AWAY = "Notion is not answering; your file is safe here and will continue.";

const ENDPOINT = new URL("files/", document.baseURI).href;
const statusUrl = (id) => new URL(`api/upload/status/${encodeURIComponent(id)}`, document.baseURI).href;
const LIMITS_URL = new URL("api/limits", document.baseURI).href;
const DESTINATIONS_URL = new URL("api/destinations", document.baseURI).href;
const DESTINATION_KEY = "notion-relay/destination";

const $ = (selector) => document.querySelector(selector);
const fileInput = $("#file-input");
const dropzone = $("#dropzone");
const tokenInput = $("#token-input");
const list = $("#uploads");
const startButton = $("#start");
const clearButton = $("#clear");
const picker = $("#destination");

// How long to wait for the relay. `?reply_timeout_s=N` (or the body's data-reply-timeout-s):
// seconds after a request's body went out; `?stall_timeout_s=N`: seconds a body may not move.
export const timeouts = (() => {
  const query = new URLSearchParams(window.location.search);
  const seconds = (name, data, fallback) => {
    const value = Number(query.get(name) ?? document.body.dataset[data]);
    return Number.isFinite(value) && value > 0 ? value : fallback;
  };
  return {
    replyS: seconds("reply_timeout_s", "replyTimeoutS", 120),
    stallS: seconds("stall_timeout_s", "stallTimeoutS", 60),
  };
})();

// --- the upload token -----------------------------------------------------------------------

// An app hands the page an upload grant as /#grant=… (a fragment never reaches a server, its
// logs or a Referer): it leaves the address bar at once and lasts for this tab only.
const GRANT_KEY = "notion-relay/grant";

function loadToken() {
  const grant = new URLSearchParams(location.hash.slice(1)).get("grant");
  if (grant) history.replaceState(null, "", location.pathname + location.search);
  try {
    if (grant) sessionStorage.setItem(GRANT_KEY, grant);
    tokenInput.value = sessionStorage.getItem(GRANT_KEY) || localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    tokenInput.value = grant || "";
  }
}

function saveToken() {
  try {
    const value = tokenInput.value.trim();
    if (value && value === sessionStorage.getItem(GRANT_KEY)) return;  // a grant is never kept longer
    sessionStorage.removeItem(GRANT_KEY);
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

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MIB) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 * MIB) return `${(bytes / MIB).toFixed(1)} MiB`;
  return `${(bytes / (1024 * MIB)).toFixed(2)} GiB`;
}

export function formatDuration(seconds) {
  const s = Math.max(1, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function percent(part, whole) {
  if (!whole) return 0;
  return Math.min(100, Math.floor((1000 * part) / whole) / 10);
}

// --- what went wrong, and what to do about it -----------------------------------------------

// A request the page gave up waiting for. Not a user's stop: it is retried like a dropped
// connection. kind: "timeout" (the body went out, no answer came) or "stalled" (the body stopped).
class PageTimeout extends Error {
  constructor(kind, seconds) {
    super(kind === "stalled" ? `no data moved for ${seconds} s` : `no answer within ${seconds} s`);
    this.kind = kind;
  }
}

// An error answer to a HEAD, turned into a failure: left alone, tus-js-client would create a
// new upload for any HEAD that is not 2xx (a 503 while the relay restarts, a 401, a 410) and
// lose what the relay holds. Only 404 (the relay does not know the upload) lets it start anew.
class HeadRefusal extends Error {
  constructor(response) {
    super(`HTTP ${response.getStatus()}`);
    this.response = response;
  }
}

function parseRetryAfter(value) {
  if (!value) return null;
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return parseFloat(value);
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
}

function parseJson(text) {
  try {
    const body = JSON.parse(text || "null");
    return body && typeof body === "object" ? body : null;
  } catch {
    return null;
  }
}

const PHASES = { POST: "create", HEAD: "head", PATCH: "patch", DELETE: "delete" };

// tus-js-client's error → {kind, status, body, retryAfterS, phase, message}. kind: "http" (an
// error answer), "timeout", "stalled", "network" (no answer at all), "page" (not a request).
export function failureOf(error) {
  const request = error?.originalRequest;
  const phase = request ? PHASES[request.getMethod()] || "" : "";
  const cause = error?.causingError;
  if (cause instanceof PageTimeout) return { kind: cause.kind, status: 0, phase, message: cause.message };
  const response = cause instanceof HeadRefusal ? cause.response : error?.originalResponse;
  if (response) {
    const body = parseJson(response.getBody());
    return {
      kind: "http",
      status: response.getStatus(),
      body,
      retryAfterS: parseRetryAfter(response.getHeader("Retry-After")) ?? body?.retry_after ?? null,
      phase,
    };
  }
  if (request) return { kind: "network", status: 0, phase };
  return { kind: "page", status: 0, phase, message: String(error?.message || error) };
}

// "retry": wait and go on by itself. "restart": the relay does not know the upload (404); a new
// one is created by itself. "gone": the relay says it cannot go on (410, or can_resume: false);
// the user may start over. "token": the upload token is missing or wrong. "fail": nothing
// the page can do helps (too large, a type Notion refuses, a malformed request).
export function decide(failure) {
  if (["timeout", "stalled", "network"].includes(failure.kind)) return "retry";
  if (failure.kind !== "http") return "fail";
  const status = failure.status;
  if (isDestinationRefusal(failure)) return "fail";
  if (status === 401 || status === 403) return "token";
  if (status === 404) return failure.phase === "create" ? "fail" : "restart";
  if (status === 410) return failure.phase === "create" ? "fail" : "gone";
  if (failure.body?.can_resume === false) return "gone";
  if (status === 409 || status === 423 || status === 429 || status === 460 || status >= 500) return "retry";
  return "fail";
}

// The relay (or the upload grant) does not let this upload go where it asked: 403 at creation,
// about the destination rather than the token. A new token would not help; another place might.
export function isDestinationRefusal(failure) {
  if (failure.kind !== "http" || failure.status !== 403 || failure.phase !== "create") return false;
  const body = failure.body || {};
  return body.reason === "grant_destination" || /destination|page or database/i.test(String(body.error || ""));
}

// Notion away, rather than the network or the relay: the relay said so (503 with the breaker's
// state, or words about Notion), or it took the whole body and then had no answer in time (it
// answers the last PATCH only once Notion holds the file).
export function isNotionAway(failure) {
  if (failure.kind === "timeout") return failure.phase === "patch" || failure.phase === "create";
  if (failure.kind !== "http" || failure.status !== 503) return false;
  const body = failure.body || {};
  return Boolean(body.circuit_breaker_state) || body.code === "upload_failed"
    || /notion/i.test(String(body.error || ""));
}

// A failure in plain words. The relay's own messages (`body.error`) are written for people, so
// they are quoted where they add something.
export function explain(failure) {
  const server = typeof failure.body?.error === "string" ? failure.body.error.trim().replace(/[.\s]+$/, "") : "";
  const because = server ? `: ${server}.` : ".";
  if (isNotionAway(failure)) return NOTION_AWAY;
  switch (failure.kind) {
    case "network":
      return "The connection to the server was lost (the network is down or the server is restarting).";
    case "stalled":
      return "The connection stalled: no data moved for a while.";
    case "timeout":
      return "The server did not answer in time.";
    case "page":
      return `The file could not be read (${failure.message}). Choose it again if it changed on disk.`;
    default:
      break;
  }
  switch (failure.status) {
    case 400:
      if (failure.body?.code === "rejected_by_notion") return `Notion refused this file${because}`;
      return `The server refused this upload as invalid${because}`;
    case 403:
      if (isDestinationRefusal(failure)) return `Files may not go to this destination${because}`;
    // falls through: any other 403 is about the token
    case 401:
      return "Your upload token was not accepted. Check it under “Upload token”, then press Retry.";
    case 404:
      return "The server no longer had this upload; starting again from the beginning.";
    case 410:
      return `This upload cannot continue${because} Press “Start over” to send the file again.`;
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
      return `Too many uploads or too much data for now${because}`;
    case 460:
      return "A piece of the file was damaged on the way; it will be sent again.";
    case 500:
      return "The server ran into an internal problem. What it received is kept.";
    case 502:
      if (failure.body?.can_resume === false) {
        return `Notion could not take the file${because} Press “Start over” to send it again.`;
      }
      return server ? `Notion could not take the file: ${server}.` : "The server could not reach Notion.";
    case 503:
      return server ? `The server asks to wait a moment: ${server}.` : "The server is busy for a moment.";
    case 504:
      return "A gateway between you and the server gave up waiting.";
    default:
      return `The server answered with an error (HTTP ${failure.status})${because}`;
  }
}

// Seconds before attempt `attempt` (0, 1, …): 0.5, 1, 2, 4 … up to a minute, ±25 %.
export function backoffS(attempt) {
  const base = Math.min(60, 0.5 * 2 ** Math.min(attempt, 10));
  return base * (1 + 0.25 * (2 * Math.random() - 1));
}

// --- what the relay takes (GET /api/limits) -------------------------------------------------

const limits = { maxFileBytes: null, extensions: null, contentTypes: null };

async function loadLimits() {
  try {
    const response = await fetch(LIMITS_URL, { cache: "no-store", signal: AbortSignal.timeout(15000) });
    if (!response.ok) return;
    const doc = await response.json();
    limits.maxFileBytes = Number(doc.max_file_bytes) > 0 ? Number(doc.max_file_bytes) : null;
    limits.extensions = Array.isArray(doc.extensions) ? new Set(doc.extensions.map(String)) : null;
    limits.contentTypes = Array.isArray(doc.content_types) ? new Set(doc.content_types.map(String)) : null;
  } catch {
    return; // the relay checks again at creation; its answer is shown then
  }
  if (limits.extensions) {
    const names = [...limits.extensions].sort();
    fileInput.accept = names.map((ext) => `.${ext}`).join(",");
    $("#types-list").textContent = names.map((ext) => `.${ext}`).join(" ");
    $("#types-box").hidden = false;
  }
  if (limits.maxFileBytes) {
    $("#accepts").textContent = `Several at once are fine, each up to ${formatBytes(limits.maxFileBytes)}`
      + " (this Notion workspace's limit).";
  }
  for (const item of items) item.checkAgainstLimits();
}

function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  if (dot <= 0 || dot === name.length - 1) return null;
  return name.slice(dot + 1).toLowerCase();
}

// Why the relay would refuse this file, in plain words, or "" when it would take it.
export function refusalFor(file) {
  if (file.size === 0) return "Empty files cannot be stored in Notion.";
  if (limits.maxFileBytes && file.size > limits.maxFileBytes) {
    return `This file is ${formatBytes(file.size)}; this Notion workspace takes files up to `
      + `${formatBytes(limits.maxFileBytes)}.`;
  }
  if (limits.extensions) {
    const ext = extensionOf(file.name);
    const type = (file.type || "").split(";")[0].trim().toLowerCase();
    if (ext && !limits.extensions.has(ext)) return `Notion does not accept .${ext} files.`;
    // Without an extension the relay names the file from its type, if Notion takes that type.
    if (!ext && !(type && limits.contentTypes?.has(type))) {
      return "Notion needs to know the file's type, and this file has no extension it accepts.";
    }
  }
  return "";
}

// --- where files go (GET /api/destinations) ------------------------------------------------

// The relay's destinations as Notion describes them ({name, id, kind, title}) and the one an
// upload gets when it names none (null: it must name one). Empty list: not known (yet).
const destinations = { list: [], fallback: null };

// "Deliverables (database)": the title Notion gives, and what it is; the relay's name where
// Notion gave no title, or where two places share a title.
export function destinationLabel(place, all = []) {
  if (!place.title && place.name === "default") return "Default page";
  const twin = place.title && all.some((other) => other !== place && other.title === place.title);
  const extras = [["page", "database"].includes(place.kind) ? place.kind : null, twin ? place.name : null].filter(Boolean);
  const base = place.title || place.name;
  return extras.length ? `${base} (${extras.join(", ")})` : base;
}

// The destination new uploads go to: the one chosen, the only one, or null when not known.
function currentDestination() {
  const list = destinations.list;
  if (list.length > 1) return list.find((place) => place.name === picker.value) || null;
  return list[0] || null;
}

// What an upload says in its `destination` metadata: nothing when there is only the relay's
// default (as before destinations existed), else the name.
function destinationToSend(place) {
  if (!place) return null;
  if (destinations.list.length === 1 && place.name === destinations.fallback) return null;
  return place.name;
}

function rememberedDestination() {
  try {
    return localStorage.getItem(DESTINATION_KEY);
  } catch {
    return null;
  }
}

function rememberDestination() {
  try {
    localStorage.setItem(DESTINATION_KEY, picker.value);
  } catch {
    /* storage disabled: the choice lasts for this visit */
  }
}

function pickerChanged() {
  const place = currentDestination();
  $("#destination-hint").textContent = !place ? ""
    : place.kind === "database"
      ? "Each file becomes a new row of this database, titled with its name unless you give a title."
      : "Each file is added to the end of this page, with its caption if you give one.";
  for (const item of items) item.refreshDescribe();
}

async function loadDestinations(attempt = 0) {
  let doc = null;
  try {
    const response = await fetch(DESTINATIONS_URL, { cache: "no-store", signal: AbortSignal.timeout(15000) });
    if (response.ok) doc = await response.json();
    else if (response.status === 404) return; // a relay without destinations: files go where it says
  } catch {
    doc = null;
  }
  if (!doc || !Array.isArray(doc.destinations)) {
    // Without the list the relay's default is used; try again a few times in case it appears.
    if (attempt < 5) setTimeout(() => loadDestinations(attempt + 1), 3000 * (attempt + 1));
    return;
  }
  destinations.list = doc.destinations.filter((place) => place && typeof place.name === "string");
  destinations.fallback = typeof doc.default === "string" ? doc.default : null;
  const list = destinations.list;
  const remembered = rememberedDestination();
  const chosen = list.find((place) => place.name === remembered)
    || list.find((place) => place.name === destinations.fallback) || list[0];
  picker.replaceChildren(...list.map((place) => element("option", {
    value: place.name, text: destinationLabel(place, list),
  })));
  if (chosen) picker.value = chosen.name;
  $("#destination-box").hidden = list.length < 2;
  pickerChanged();
}

// --- HTTP for tus-js-client: patient, with timeouts that are retried ------------------------

// The answer as it arrived. XMLHttpRequest's own fields are not kept: an abort() after the
// answer (the user's stop, or the status endpoint saying "completed" first) turns its status
// into 0, which tus-js-client would take for a failed HEAD and create a new upload.
class PatientResponse {
  constructor(inner) {
    this.xhr = inner.getUnderlyingObject();
    this.status = inner.getStatus();
    this.body = inner.getBody();
    this.headers = new Map();
    for (const line of (this.xhr.getAllResponseHeaders() || "").split(/\r?\n/)) {
      const colon = line.indexOf(":");
      if (colon > 0) this.headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }

  getStatus() {
    return this.status;
  }

  getHeader(name) {
    const value = this.headers.get(name.toLowerCase()) ?? null;
    if (!value || name.toLowerCase() !== "location") return value;
    // Behind a router that ends TLS without saying so (X-Forwarded-Proto), the relay names
    // itself with http:, which an https page may not call; our own scheme is the one that works.
    const url = new URL(value, ENDPOINT);
    if (url.host === window.location.host) url.protocol = window.location.protocol;
    return url.href;
  }

  getBody() {
    return this.body;
  }

  getUnderlyingObject() {
    return this.xhr;
  }
}

class PatientRequest {
  constructor(inner) {
    this.inner = inner;
    this.timer = null;
    this.settled = false;
  }

  getMethod() { return this.inner.getMethod(); }

  getURL() { return this.inner.getURL(); }

  setHeader(name, value) { this.inner.setHeader(name, value); }

  getHeader(name) { return this.inner.getHeader(name); }

  setProgressHandler(handler) { this.inner.setProgressHandler(handler); }

  getUnderlyingObject() { return this.inner.getUnderlyingObject(); }

  // The user's stop (pause, cancel): tus-js-client calls this and ignores what follows. A
  // request that has its answer is left alone.
  abort() {
    clearTimeout(this.timer);
    return this.settled ? Promise.resolve() : this.inner.abort();
  }

  send(body = null) {
    const xhr = this.inner.getUnderlyingObject();
    return new Promise((resolve, reject) => {
      const settle = (fn, value) => {
        if (this.settled) return;
        this.settled = true;
        clearTimeout(this.timer);
        fn(value);
      };
      // Our own timer: it rejects with a PageTimeout first, then drops the connection, so the
      // failure is a timeout (retried), never an "abort".
      const arm = (kind, seconds) => {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => {
          settle(reject, new PageTimeout(kind, seconds));
          this.inner.abort(); // the connection goes; its answer, if any, is not waited for
        }, seconds * 1000);
      };
      const awaitAnswer = () => arm("timeout", timeouts.replyS);
      if (body && xhr.upload) {
        arm("stalled", timeouts.stallS);
        xhr.upload.addEventListener("progress", () => arm("stalled", timeouts.stallS));
        xhr.upload.addEventListener("load", awaitAnswer);
      } else {
        awaitAnswer();
      }
      this.inner.send(body).then((response) => {
        const status = response.getStatus();
        const wrapped = new PatientResponse(response);
        if (this.getMethod() === "HEAD" && (status < 200 || status >= 300) && status !== 404) {
          settle(reject, new HeadRefusal(wrapped));
        } else {
          settle(resolve, wrapped);
        }
      }, (error) => settle(reject, error));
    });
  }
}

class PatientHttpStack {
  constructor() {
    this.inner = new tus.DefaultHttpStack();
  }

  createRequest(method, url) {
    return new PatientRequest(this.inner.createRequest(method, url));
  }

  getName() {
    return `Patient${this.inner.getName()}`;
  }
}

// --- remembered uploads (tus-js-client's urlStorage) ----------------------------------------

const urlStorage = tus?.defaultOptions.urlStorage;

function fingerprintOf(file) {
  return tus.defaultOptions.fingerprint(file, { endpoint: ENDPOINT });
}

function fingerprintOfKey(key) {
  // `tus::<fingerprint>::<random id>`
  return key.slice(STORAGE_PREFIX.length, key.lastIndexOf("::"));
}

function uploadIdOf(url) {
  return url ? decodeURIComponent(new URL(url).pathname.split("/").filter(Boolean).pop()) : null;
}

async function rememberedUploads() {
  if (!urlStorage) return [];
  let entries = [];
  try {
    entries = await urlStorage.findAllUploads();
  } catch {
    return [];
  }
  const fresh = [];
  for (const entry of entries) {
    const created = Date.parse(entry.creationTime || "");
    const ours = typeof entry.uploadUrl === "string" && entry.uploadUrl.startsWith(ENDPOINT);
    if (!ours) continue;
    if (!created || Date.now() - created > FORGET_AFTER_MS) await forgetKey(entry.urlStorageKey);
    else fresh.push(entry);
  }
  return fresh;
}

async function forgetKey(key) {
  try {
    await urlStorage?.removeUpload(key);
  } catch {
    /* storage disabled */
  }
}

async function forgetFingerprint(fingerprint) {
  if (!urlStorage || !fingerprint) return;
  try {
    for (const entry of await urlStorage.findUploadsByFingerprint(fingerprint)) await forgetKey(entry.urlStorageKey);
  } catch {
    /* storage disabled */
  }
}

// --- the status endpoint --------------------------------------------------------------------

// {status: HTTP status (0: no answer), doc: the JSON document or null}
async function fetchStatus(id) {
  if (!id) return { status: 0, doc: null };
  try {
    const response = await fetch(statusUrl(id), {
      headers: authHeaders(), cache: "no-store", signal: AbortSignal.timeout(10000),
    });
    return { status: response.status, doc: response.ok ? await response.json() : null };
  } catch {
    return { status: 0, doc: null };
  }
}

// --- announcements and focus ----------------------------------------------------------------

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

function focusable(node) {
  return Boolean(node && node.isConnected && !node.hidden && !node.closest("[hidden]") && !node.disabled);
}

// Keeps keyboard focus somewhere useful when the control that had it goes away (hidden,
// removed): the first of `candidates` that can take it, else the Upload button.
function keepFocus(hadFocus, ...candidates) {
  if (!hadFocus) return;
  const active = document.activeElement;
  if (active && active !== document.body && focusable(active)) return;
  const target = candidates.find(focusable) || startButton;
  target.focus();
}

// --- one file -------------------------------------------------------------------------------

const LABELS = {
  ready: "Ready",
  resumable: "Ready to resume",
  refused: "Not accepted",
  queued: "Waiting for its turn",
  connecting: "Connecting",
  uploading: "Sending",
  retrying: "Retrying",
  waiting: "Waiting for Notion",
  paused: "Paused",
  finishing: "Finishing in Notion…",
  done: "Stored in Notion",
  error: "Failed",
  gone: "Cannot continue",
  cancelled: "Cancelled",
};
const STARTABLE = new Set(["ready", "resumable"]);
const ACTIVE = new Set(["connecting", "uploading", "retrying", "waiting", "finishing"]);
const POLLED = new Set([...ACTIVE, "paused"]);
const FINISHED = new Set(["done", "cancelled"]);
const COUNTED = new Set([...STARTABLE, "queued", ...ACTIVE, "paused", "done", "error", "gone"]);

const items = [];
let fileCount = 0; // ids for each file's fields
const totals = { moved: 0, stored: 0 }; // bytes sent, and newly stored in Notion, during this visit

class Item {
  constructor(file) {
    this.file = file;
    this.sent = 0; // bytes the relay has (the highest offset seen)
    this.confirmed = 0; // bytes Notion holds
    this.uploadId = null;
    this.upload = null; // the tus.Upload, made when the upload starts
    this.previous = null; // a remembered upload of this file, to resume
    this.fingerprint = null;
    this.retryAt = 0;
    this.words = ""; // the message that goes with the state
    this.notionAway = false; // the status endpoint says the relay's Notion breaker is open
    this.failure = null;
    this.destination = null; // where it goes: the destination chosen when Upload was pressed
    this.build();
    this.setState("ready");
    this.checkAgainstLimits();
    this.lookup = this.lookUpEarlier();
  }

  checkAgainstLimits() {
    if (!["ready", "resumable", "refused"].includes(this.state)) return;
    const refusal = refusalFor(this.file);
    if (refusal) this.setState("refused", refusal);
    else if (this.state === "refused") this.setState(this.previous ? "resumable" : "ready");
  }

  // A remembered upload of this file (chosen again after a reload): ask the relay how far it
  // got, and whether it can go on.
  async lookUpEarlier() {
    if (!tus) return;
    this.fingerprint = await fingerprintOf(this.file);
    refreshEarlier();
    const entries = (await rememberedUploads())
      .filter((entry) => fingerprintOfKey(entry.urlStorageKey) === this.fingerprint)
      .sort((a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime));
    if (!entries.length) return;
    const id = uploadIdOf(entries[0].uploadUrl);
    const { status, doc } = await fetchStatus(id);
    const over = doc && (["completed", "expired", "terminated"].includes(doc.status) || doc.can_resume === false);
    if (status === 404 || status === 410 || over) {
      // Done already, or it cannot go on: a new upload, from the beginning.
      await forgetFingerprint(this.fingerprint);
      refreshEarlier();
      if (this.state === "ready" && doc?.status !== "completed") {
        this.setState("ready", "The earlier upload of this file cannot continue; Upload sends it again from the beginning.");
      }
      return;
    }
    this.previous = entries[0];
    this.uploadId = id;
    this.el.dataset.uploadId = id;
    if (doc) this.takeStatus(doc);
    if (this.state === "ready") {
      this.setState("resumable", this.sent > 0
        ? `${formatBytes(this.sent)} already on the server; it continues from there.`
        : "An earlier upload of this file continues where it stopped.");
    }
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
    // A caption (and, for a database row, a title) until the upload starts.
    const id = `file-${++fileCount}`;
    this.titleInput = element("input", { id: `${id}-title`, type: "text", autocomplete: "off", spellcheck: "true" });
    this.captionInput = element("input", { id: `${id}-caption`, type: "text", autocomplete: "off", spellcheck: "true" });
    this.describeWords = element("span");
    this.titleField = element("p", { className: "field" },
      element("label", { for: `${id}-title`, text: "Row title (empty: the file's name)" }), this.titleInput);
    this.describeEl = element("details", { className: "describe", hidden: "" },
      element("summary", {}, this.describeWords, element("span", { className: "visually-hidden", text: ` for ${name}` })),
      element("div", { className: "describe-body" },
        this.titleField,
        element("p", { className: "field" },
          element("label", { for: `${id}-caption`, text: "Caption" }), this.captionInput)));
    // Two buttons whose words change with the state (Pause ⇄ Resume, Cancel → Remove …), so
    // the one just pressed keeps the keyboard focus.
    this.mainButton = element("button", { type: "button" });
    this.sideButton = element("button", { type: "button" });
    this.mainButton.addEventListener("click", () => this.act(this.mainButton.dataset.action, this.mainButton));
    this.sideButton.addEventListener("click", () => this.act(this.sideButton.dataset.action, this.sideButton));
    // tabindex -1: the row itself takes the focus while it offers no button (finishing).
    this.el = element("li", { className: "upload", tabindex: "-1" },
      element("div", { className: "upload-head" },
        element("span", { className: "name", text: name, title: name }),
        element("span", { className: "size", text: formatBytes(this.file.size) }),
        this.stateEl),
      this.bar,
      this.messageEl,
      this.describeEl,
      this.resultEl,
      element("div", { className: "upload-foot" },
        this.numbersEl,
        element("div", { className: "actions" }, this.mainButton, this.sideButton)));
  }

  get known() {
    return Boolean(this.upload?.url || this.previous);
  }

  // Which buttons this state offers: [main action, side action]; null = none.
  actions() {
    const s = this.state;
    const forget = this.known ? "cancel" : "remove";
    if (["connecting", "uploading", "retrying", "waiting"].includes(s)) return ["pause", "cancel"];
    if (s === "paused") return ["resume", "cancel"];
    if (s === "queued") return [null, "cancel"];
    if (s === "finishing") return [null, null];
    if (s === "error") {
      const again = this.failure && ["fail"].includes(decide(this.failure)) ? null : "retry";
      return [again, forget];
    }
    if (s === "gone") return ["start-over", "remove"];
    return [null, "remove"]; // ready, resumable, refused, done, cancelled
  }

  setState(state, words = "") {
    const hadFocus = this.el.contains(document.activeElement);
    this.state = state;
    this.words = words;
    this.el.dataset.state = state;
    this.stateEl.textContent = LABELS[state];
    if (!["retrying", "waiting"].includes(state)) this.retryAt = 0;
    const [main, side] = this.actions();
    this.setButton(this.mainButton, main);
    this.setButton(this.sideButton, side);
    if (this.uploadId) this.el.dataset.uploadId = this.uploadId;
    this.refreshDescribe();
    this.render();
    refreshToolbar();
    keepFocus(hadFocus, this.mainButton, this.sideButton, this.el);
  }

  // A caption (and a row's title) may be given while the file waits for Upload; the relay takes
  // them with the upload's creation, so the fields go once it starts. Offered where files may go
  // to more than one place, or to a database; a relay with only its default page keeps the list
  // as plain as it was.
  refreshDescribe() {
    const place = this.destination || currentDestination();
    const database = place?.kind === "database";
    const offered = destinations.list.length > 1 || database;
    this.describeEl.hidden = !(offered && this.state === "ready" && !this.upload);
    this.titleField.hidden = !database;
    this.describeWords.textContent = database ? "Add a title and caption" : "Add a caption";
  }

  setButton(button, action) {
    const words = {
      pause: "Pause", resume: "Resume", retry: "Retry", cancel: "Cancel", remove: "Remove",
      "start-over": "Start over",
    };
    button.hidden = !action;
    if (!action) return;
    button.dataset.action = action;
    button.textContent = words[action];
    const label = action === "remove" ? `Remove ${this.file.name} from the list` : `${words[action]} ${this.file.name}`;
    button.setAttribute("aria-label", label);
    button.classList.toggle("primary", action === "start-over");
  }

  act(action, button) {
    if (action === "pause") this.pause();
    else if (action === "resume" || action === "retry") this.queue();
    else if (action === "start-over") this.startOver();
    else if (action === "cancel") this.cancel();
    else if (action === "remove") this.remove(button);
  }

  render() {
    const size = this.file.size;
    const sentPct = percent(this.sent, size);
    const storedPct = percent(this.confirmed, size);
    this.sentBar.style.width = `${sentPct}%`;
    this.storedBar.style.width = `${storedPct}%`;
    this.bar.setAttribute("aria-valuenow", String(storedPct));
    this.bar.setAttribute("aria-valuetext", `${storedPct}% stored in Notion, ${sentPct}% sent`);
    this.numbersEl.textContent = size && this.state !== "refused"
      ? `Sent ${formatBytes(this.sent)} of ${formatBytes(size)} (${sentPct}%) · `
        + `stored in Notion ${formatBytes(this.confirmed)} (${storedPct}%)`
      : "";
    let words = this.words;
    if (this.notionAway && ["uploading", "finishing", "retrying"].includes(this.state)) words = NOTION_AWAY;
    if (this.retryAt && ["retrying", "waiting"].includes(this.state)) {
      const seconds = Math.ceil((this.retryAt - Date.now()) / 1000);
      words += seconds > 0 ? ` Trying again in ${seconds} s.` : " Trying again now…";
    }
    if (this.messageEl.textContent !== words) this.messageEl.textContent = words;
    scheduleTotal();
  }

  // --- the tus upload ---------------------------------------------------------------------

  newUpload() {
    const metadata = { filename: this.file.name };
    if (this.file.type) metadata.filetype = this.file.type;
    const place = this.destination || currentDestination();
    const destination = destinationToSend(place);
    if (destination) metadata.destination = destination;
    const title = this.titleInput.value.trim();
    const caption = this.captionInput.value.trim();
    if (title && place?.kind === "database") metadata.title = title;
    if (caption) metadata.caption = caption;
    // Callbacks of an upload this row no longer runs (paused, done, replaced by Start over) are
    // ignored. tus-js-client may still be on its way to a request when it is stopped (a retry
    // timer that fired just before: its start() clears the stop), so every request asks first.
    const current = () => upload === this.upload && ACTIVE.has(this.state);
    const upload = new tus.Upload(this.file, {
      endpoint: ENDPOINT,
      chunkSize: FALLBACK_CHUNK, // until the relay says the upload's part size
      metadata,
      retryDelays: new Array(RETRY_SLOTS).fill(1000), // each filled in by onShouldRetry
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      httpStack: new PatientHttpStack(),
      onBeforeRequest: (request) => {
        if (!current()) {
          upload.abort(); // stopped for good: the error below is not reported
          throw new Error("the upload was stopped on this page");
        }
        for (const [name, value] of Object.entries(authHeaders())) request.setHeader(name, value);
      },
      onAfterResponse: (request, response) => (current() ? this.afterResponse(request, response) : undefined),
      onUploadUrlAvailable: () => current() && this.urlAvailable(),
      onProgress: (sent) => current() && this.progress(sent),
      onShouldRetry: (error, attempt, options) => current() && this.shouldRetry(error, attempt, options),
      onSuccess: () => upload === this.upload && this.allSent(),
      onError: (error) => current() && this.failed(failureOf(error)),
    });
    return upload;
  }

  async afterResponse(request, response) {
    const method = request.getMethod();
    const status = response.getStatus();
    if (method === "HEAD" && status === 404) {
      // The relay does not know the upload (its disk was wiped, or it was cancelled elsewhere):
      // tus-js-client creates a new one.
      this.sent = 0;
      this.confirmed = 0;
      this.setState("connecting", explain({ kind: "http", status: 404, phase: "head" }));
      announce(`${this.file.name}: the server no longer had the upload; starting again from the beginning.`);
      return;
    }
    if ((method === "POST" && status === 201) || (method === "HEAD" && status === 200)) {
      // Before the first PATCH: the upload's part size sets the PATCH size.
      const location = method === "POST" ? response.getHeader("Location") : request.getURL();
      if (location) await this.learnPartSize(uploadIdOf(new URL(location, ENDPOINT).href));
    }
  }

  async learnPartSize(id) {
    const { doc } = await fetchStatus(id);
    const partSize = Number(doc?.part_size);
    if (this.upload) this.upload.options.chunkSize = partSize > 0 ? Math.min(MAX_CHUNK, partSize) : FALLBACK_CHUNK;
    if (doc && doc.upload_id === id) this.takeStatus(doc);
  }

  urlAvailable() {
    if (!this.upload?.url) return;
    this.uploadId = uploadIdOf(this.upload.url);
    this.el.dataset.uploadId = this.uploadId;
    if (this.state === "connecting") this.setState("uploading");
    refreshEarlier();
  }

  progress(sent) {
    if (sent <= this.sent) return; // a resend of what the relay already has
    totals.moved += sent - this.sent;
    this.sent = sent;
    if (sent >= this.file.size) {
      // The whole file went out; the relay answers once Notion holds all of it.
      if (this.state !== "done") this.setState("finishing");
    } else if (this.state !== "uploading" && ACTIVE.has(this.state)) {
      this.setState("uploading");
    } else {
      this.render();
    }
  }

  shouldRetry(error, attempt, options) {
    const failure = failureOf(error);
    const decision = decide(failure);
    if (decision !== "retry" && decision !== "restart") return false;
    const waitS = Math.min(MAX_WAIT_S, Math.max(backoffS(attempt), failure.retryAfterS ?? 0));
    options.retryDelays[attempt] = Math.round(waitS * 1000); // what tus-js-client waits next
    this.failure = failure;
    this.retryAt = Date.now() + waitS * 1000;
    const away = isNotionAway(failure) || (this.notionAway && failure.kind === "stalled");
    const was = this.state;
    this.setState(away ? "waiting" : "retrying", away ? NOTION_AWAY : explain(failure));
    if (away && was !== "waiting") announce(`${this.file.name}: ${NOTION_AWAY}`);
    poller.soon();
    return true;
  }

  allSent() {
    // The relay answered the last PATCH, which it does only once Notion holds the file; the
    // status endpoint confirms it and names the result.
    this.sent = this.file.size;
    if (this.state !== "done") this.setState("finishing");
    poller.soon();
  }

  failed(failure) {
    this.failure = failure;
    const decision = decide(failure);
    if (decision === "gone") {
      // Nothing to resume after a reload either.
      forgetFingerprint(this.fingerprint).then(refreshEarlier);
      this.setState("gone", explain({ ...failure, status: 410 }));
      announce(`${this.file.name}: this upload cannot continue. Start over sends it again.`);
    } else {
      if (decision === "token") $("#token-box").open = true;
      this.setState("error", explain(failure));
      announce(`${this.file.name}: ${explain(failure)}`);
    }
    pump();
  }

  // --- the status endpoint ----------------------------------------------------------------

  takeStatus(doc) {
    const held = Number(doc.offset); // bytes the relay has, whatever this page saw
    if (Number.isFinite(held)) this.sent = Math.max(this.sent, Math.min(held, this.file.size));
    const confirmed = Number(doc.bytes_confirmed);
    if (Number.isFinite(confirmed)) this.setConfirmed(confirmed);
    const breaker = String(doc.circuit_breaker?.state || "closed").toLowerCase();
    this.notionAway = breaker !== "closed" && doc.status !== "completed";
    if (doc.status === "completed") {
      this.stored(doc);
      return;
    }
    const over = ["expired", "terminated"].includes(doc.status) || (doc.status === "failed" && doc.can_resume === false);
    if (over && (ACTIVE.has(this.state) || this.state === "paused")) {
      this.upload?.abort();
      this.failed({ kind: "http", status: 410, phase: "patch", body: { error: doc.error || `the upload is ${doc.status}`, can_resume: false } });
      return;
    }
    if (this.notionAway && this.state === "retrying") this.setState("waiting", NOTION_AWAY);
    else this.render();
  }

  setConfirmed(bytes) {
    const confirmed = Math.max(0, Math.min(bytes, this.file.size));
    if (confirmed > this.confirmed && ACTIVE.has(this.state)) totals.stored += confirmed - this.confirmed;
    this.confirmed = confirmed;
  }

  stored(doc) {
    if (this.state === "done") return;
    this.upload?.abort(); // in case the final answer was lost: the status already says it all
    forgetFingerprint(this.fingerprint).then(refreshEarlier);
    this.sent = this.file.size;
    this.setConfirmed(this.file.size);
    this.notionAway = false;
    this.setState("done");
    this.showResult(doc.notion || {});
    announce(`${this.file.name} is stored in Notion.`);
    pump();
  }

  showResult(notion) {
    const parts = [];
    const line = (label, value, code = true) => {
      if (!value) return;
      const shown = code ? element("code", { text: value }) : value;
      parts.push(element("div", {}, element("dt", { text: label }), element("dd", {}, shown)));
    };
    // Where it went, named as the picker names it, when there was a choice.
    const went = notion.destination?.name;
    const place = destinations.list.find((entry) => entry.name === went);
    if (went && destinations.list.length > 1) line("Went to", place ? destinationLabel(place, destinations.list) : went, false);
    line("Notion file upload id", notion.file_upload_id);
    line("Block id", notion.block_id);
    line("Row id", notion.row_id);
    const dl = element("dl", {}, ...parts);
    this.resultEl.replaceChildren(dl);
    const link = (href, text) => this.resultEl.append(element("a", {
      href, target: "_blank", rel: "noopener noreferrer", text,
    }));
    const compact = (id) => String(id).replace(/-/g, "");
    if (notion.row_id) {
      // A database destination: the new row is a page of its own.
      link(`https://www.notion.so/${compact(notion.row_id)}`, `Open the row in Notion (${this.file.name})`);
    } else if (notion.page_id) {
      const block = notion.block_id ? `#${compact(notion.block_id)}` : "";
      link(`https://www.notion.so/${compact(notion.page_id)}${block}`, `Open the page in Notion (${this.file.name})`);
    } else {
      this.resultEl.append(element("p", {
        className: "hint",
        text: "The file is uploaded but not attached to a page (the server has no target page set).",
      }));
    }
    this.resultEl.hidden = false;
  }

  // --- what the buttons do ----------------------------------------------------------------

  queue() {
    this.failure = null;
    this.setState("queued");
    pump();
  }

  async run() {
    this.setState("connecting");
    await this.lookup; // a remembered upload of this file is resumed, not started anew
    if (this.state !== "connecting") return;
    if (!this.upload) {
      this.upload = this.newUpload();
      if (this.previous) this.upload.resumeFromPreviousUpload(this.previous);
    }
    this.upload.start();
  }

  pause() {
    this.upload?.abort();
    this.setState("paused", "What the server already has is kept. Press Resume to go on.");
    pump();
  }

  async cancel() {
    const url = this.upload?.url || this.previous?.uploadUrl || null;
    this.upload?.abort();
    this.setState("cancelled", "Cancelling…");
    await forgetFingerprint(this.fingerprint);
    let words = "Cancelled before anything was sent.";
    if (url) {
      const discarded = await terminate(url);
      words = discarded
        ? "Cancelled. The server discarded what it had received."
        : "Cancelled here. The server could not be told; it discards the upload within an hour.";
    }
    if (this.state === "cancelled") this.setState("cancelled", words);
    refreshEarlier();
    pump();
  }

  // After a 410: forget the dead upload, make a new one, send the whole file again.
  async startOver() {
    const url = this.upload?.url || this.previous?.uploadUrl || null;
    this.upload?.abort();
    await forgetFingerprint(this.fingerprint);
    if (url) terminate(url); // tidy up if the relay still has something; nothing waits for it
    this.upload = null;
    this.previous = null;
    this.lookup = Promise.resolve();
    this.uploadId = null;
    delete this.el.dataset.uploadId;
    this.sent = 0;
    this.confirmed = 0;
    this.notionAway = false;
    this.queue();
    refreshEarlier();
  }

  remove(button) {
    const hadFocus = this.el.contains(document.activeElement) || document.activeElement === button;
    this.upload?.abort();
    const index = items.indexOf(this);
    if (index >= 0) items.splice(index, 1);
    const next = items[index] || items[index - 1];
    this.el.remove();
    refreshToolbar();
    refreshEarlier();
    keepFocus(hadFocus, next?.mainButton, next?.sideButton, startButton);
  }
}

// True when the relay no longer has the upload afterwards.
async function terminate(url) {
  try {
    await tus.Upload.terminate(url, { headers: authHeaders(), retryDelays: [0, 1000, 3000] });
    return true;
  } catch (error) {
    const status = error?.originalResponse?.getStatus();
    return status === 404 || status === 410;
  }
}

// --- scheduling, status polling, the total --------------------------------------------------

function pump() {
  let running = items.filter((item) => ACTIVE.has(item.state)).length;
  for (const item of items) {
    if (running >= MAX_PARALLEL) break;
    if (item.state === "queued") {
      running += 1;
      item.run();
    }
  }
  refreshToolbar();
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
        const id = item.uploadId;
        const { doc } = await fetchStatus(id);
        if (doc && doc.upload_id === id && item.uploadId === id) item.takeStatus(doc);
      }
    } finally {
      this.busy = false;
      this.timer = setTimeout(() => this.tick(), POLL_MS);
    }
  },
};

// Speeds over the last 10 seconds: bytes sent to the relay, and bytes Notion newly holds.
const speed = {
  samples: [],
  sample() {
    const now = Date.now();
    this.samples.push([now, totals.moved, totals.stored]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 10000) this.samples.shift();
  },
  rates() {
    if (this.samples.length < 2) return { send: 0, store: 0 };
    const [t0, sent0, stored0] = this.samples[0];
    const [t1, sent1, stored1] = this.samples[this.samples.length - 1];
    if (t1 - t0 < 1000) return { send: 0, store: 0 };
    return { send: ((sent1 - sent0) * 1000) / (t1 - t0), store: ((stored1 - stored0) * 1000) / (t1 - t0) };
  },
};

function refreshTotal() {
  const counted = items.filter((item) => COUNTED.has(item.state));
  const box = $("#total");
  box.hidden = counted.length === 0;
  if (!counted.length) return;
  const size = counted.reduce((sum, item) => sum + item.file.size, 0);
  const sent = counted.reduce((sum, item) => sum + item.sent, 0);
  const stored = counted.reduce((sum, item) => sum + item.confirmed, 0);
  const sentPct = percent(sent, size);
  const storedPct = percent(stored, size);
  const bar = $("#total-bar");
  bar.querySelector(".bar-sent").style.width = `${sentPct}%`;
  bar.querySelector(".bar-stored").style.width = `${storedPct}%`;
  bar.setAttribute("aria-valuenow", String(storedPct));
  bar.setAttribute("aria-valuetext", `${storedPct}% of all files stored in Notion, ${sentPct}% sent`);
  const files = counted.length === 1 ? "1 file" : `${counted.length} files`;
  $("#total-text").textContent = `${files}: sent ${formatBytes(sent)} of ${formatBytes(size)} (${sentPct}%) · `
    + `stored in Notion ${formatBytes(stored)} (${storedPct}%)`;
  $("#total-rate").textContent = rateWords(counted);
}

// The total follows every row's change, once per turn of the event loop.
let totalPending = false;
function scheduleTotal() {
  if (totalPending) return;
  totalPending = true;
  queueMicrotask(() => {
    totalPending = false;
    refreshTotal();
  });
}

// "12.3 MiB/s · about 6 s left": the time left is until Notion holds everything, from whichever
// is slower, sending (the speed shown while bytes are left to send) or Notion storing them.
function rateWords(counted) {
  const active = counted.filter((item) => ACTIVE.has(item.state) || item.state === "queued");
  if (!active.length) return counted.every((item) => item.state === "done") ? "All stored in Notion." : "";
  const { send, store } = speed.rates();
  const toSend = active.reduce((sum, item) => sum + Math.max(0, item.file.size - item.sent), 0);
  const toStore = active.reduce((sum, item) => sum + Math.max(0, item.file.size - item.confirmed), 0);
  // While Notion is away no speed says anything about the time left.
  if (active.some((item) => item.state === "waiting" || item.notionAway)) return "Waiting for Notion…";
  if (toSend > 0 && send > 0) {
    // Until Notion has stored something, only the sending can be timed.
    if (store <= 0) return `${formatBytes(Math.round(send))}/s · about ${formatDuration(toSend / send)} left to send`;
    const left = Math.max(toSend / send, toStore / store);
    return `${formatBytes(Math.round(send))}/s · about ${formatDuration(left)} left`;
  }
  if (toSend === 0 && store > 0) return `${formatBytes(Math.round(store))}/s · about ${formatDuration(toStore / store)} left`;
  return toSend === 0 ? "Notion is confirming the last pieces…" : "Measuring speed…";
}

// --- the page -------------------------------------------------------------------------------

function refreshToolbar() {
  const startable = items.filter((item) => STARTABLE.has(item.state)).length;
  // aria-disabled, not disabled: a disabled button drops the keyboard focus it had.
  startButton.setAttribute("aria-disabled", String(startable === 0 || !tus));
  startButton.textContent = startable > 1 ? `Upload ${startable} files` : "Upload";
  const hadFocus = document.activeElement === clearButton;
  clearButton.hidden = !items.some((item) => FINISHED.has(item.state));
  keepFocus(hadFocus, startButton);
  $("#empty").hidden = items.length > 0;
  refreshTotal();
}

async function refreshEarlier() {
  const open = new Set(items.filter((item) => !FINISHED.has(item.state) && item.fingerprint).map((item) => item.fingerprint));
  const entries = (await rememberedUploads()).filter((entry) => !open.has(fingerprintOfKey(entry.urlStorageKey)));
  const earlierList = $("#earlier-list");
  const hadFocus = earlierList.contains(document.activeElement);
  earlierList.replaceChildren(...entries.map((entry) => {
    const name = entry.metadata?.filename || "a file";
    const discard = element("button", {
      type: "button", text: "Discard", "aria-label": `Discard the unfinished upload of ${name}`,
    });
    discard.addEventListener("click", async () => {
      discard.disabled = true;
      await terminate(entry.uploadUrl);
      await forgetKey(entry.urlStorageKey);
      refreshEarlier();
    });
    const when = entry.creationTime ? `, started ${new Date(entry.creationTime).toLocaleString()}` : "";
    return element("li", {},
      element("span", { className: "name", text: name }),
      element("span", { className: "hint", text: ` ${formatBytes(Number(entry.size) || 0)}${when}` }),
      discard);
  }));
  $("#earlier").hidden = entries.length === 0;
  keepFocus(hadFocus, earlierList.querySelector("button"), fileInput);
}

function addFiles(files) {
  if (!tus) return;
  const repeated = [];
  for (const file of files) {
    const same = (item) => item.file.name === file.name && item.file.size === file.size
      && item.file.lastModified === file.lastModified && !FINISHED.has(item.state);
    if (items.some(same)) {
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
    .filter((entry) => entry.kind === "file" && entry.webkitGetAsEntry?.()?.isDirectory)
    .map((entry) => entry.getAsFile()?.name));
  const files = Array.from(transfer.files || []).filter((file) => !folders.has(file.name));
  addFiles(files);
  if (folders.size) notify(`Folders cannot be uploaded; choose the files inside them (left out: ${[...folders].join(", ")}).`);
});
// A file dropped beside the drop zone would make the browser open it and leave the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

startButton.addEventListener("click", () => {
  if (startButton.getAttribute("aria-disabled") === "true") return;
  const place = currentDestination();
  for (const item of items) {
    if (!STARTABLE.has(item.state)) continue;
    item.destination ??= place; // where this file goes, whatever is picked later
    item.setState("queued");
  }
  pump();
});
picker.addEventListener("change", () => {
  rememberDestination();
  pickerChanged();
});
clearButton.addEventListener("click", () => {
  for (const item of items.filter((entry) => FINISHED.has(entry.state))) item.remove();
  startButton.focus();
});
tokenInput.addEventListener("input", saveToken);
$("#token-form").addEventListener("submit", (event) => {
  // Enter in the field: stay on the page, and uploads refused for the token try again.
  event.preventDefault();
  saveToken();
  for (const item of items) {
    if (item.state === "error" && item.failure && decide(item.failure) === "token") item.queue();
  }
});
// Back online: uploads waiting out a backoff try again now.
window.addEventListener("online", () => {
  for (const item of items) {
    if (item.state === "retrying" && item.upload) {
      item.upload.abort();
      item.upload.start();
    }
  }
});

loadToken();
if (!tus) {
  notify("This page cannot upload: its upload library (tus-js-client) is missing on the server. "
    + "Whoever runs the server: run ./run.sh setup.");
  $("#dropzone").classList.add("broken");
}
refreshToolbar();
refreshEarlier();
loadLimits();
loadDestinations();
poller.soon();
// Countdowns, speed and time left.
setInterval(() => {
  speed.sample();
  for (const item of items) if (item.retryAt) item.render();
  refreshTotal();
}, 1000);
