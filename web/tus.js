// A small tus 1.0.0 client (https://tus.io/protocols/resumable-upload): creation, core
// (HEAD / PATCH) and termination. No library and no build step: the browser loads this file
// as it is. It uploads one File in PATCHes of at most `chunkSize` bytes and keeps going through
// dropped connections, server restarts and busy answers, with exponential backoff and jitter.
//
// The relay this page talks to never reports the last byte as received before Notion holds the
// whole file (its HEAD says at most length − 1), so "offset === length" here always means done.

export const TUS_VERSION = "1.0.0";
export const MIB = 1024 * 1024;

// Why a request failed: "network" (no answer at all), "stalled" (no progress for a while),
// "timeout" (the body went out but no answer came), "http" (an answer with an error status),
// "protocol" (an answer this client cannot use), "aborted" (we stopped it ourselves).
export class RequestFailure extends Error {
  constructor(kind, message, { status = 0, retryAfterS = null, body = null, phase = "" } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.retryAfterS = retryAfterS;
    this.body = body; // the server's JSON error body, when it sent one
    this.phase = phase; // "create", "head", "patch", "delete"
  }
}

// What to do about a failure: "retry" (wait, ask the server for the offset, go on), "restart"
// (the server no longer knows the upload: create a new one) or "fail" (waiting will not help).
export function decide(failure) {
  if (failure.kind === "aborted") return "fail";
  if (failure.kind !== "http") return "retry";
  const status = failure.status;
  if (status === 404 || status === 410) return failure.phase === "create" ? "fail" : "restart";
  const retryable = status === 409 || status === 423 || status === 429 || status === 460 || status >= 500;
  if (!retryable) return "fail";
  // The relay says so when a retry cannot help (Notion refused the file for good).
  if (failure.body && failure.body.can_resume === false) return "fail";
  return "retry";
}

export function backoffS(attempt, { initialS = 1, maxS = 30, factor = 2, jitter = 0.25 } = {}) {
  const base = Math.min(maxS, initialS * Math.pow(factor, Math.max(0, attempt - 1)));
  return Math.max(0.1, base * (1 + jitter * (2 * Math.random() - 1)));
}

export function parseRetryAfter(value) {
  if (!value) return null;
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return parseFloat(value);
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
}

function base64Utf8(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function encodeMetadata(pairs) {
  return Object.entries(pairs)
    .filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([key, value]) => `${key} ${base64Utf8(String(value))}`)
    .join(",");
}

function parseBody(xhr) {
  const type = xhr.getResponseHeader("Content-Type") || "";
  if (!type.includes("json") || !xhr.responseText) return null;
  try {
    return JSON.parse(xhr.responseText);
  } catch {
    return null;
  }
}

// One HTTP request through XMLHttpRequest (fetch has no upload progress).
// `stallS`: abort when the body makes no progress for this long; `replyTimeoutS`: abort when the
// answer takes this long after the whole body went out (the relay's final PATCH answers only
// once Notion holds the file, so that one gets a longer wait).
export function request({ method, url, headers = {}, body = null, signal, onProgress, onBodySent,
                          stallS = 60, replyTimeoutS = 120, phase = "" }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    let timer = null;
    let settled = false;
    const finish = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      fn(value);
    };
    const arm = (seconds, kind, message) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        xhr.abort();
        finish(reject, new RequestFailure(kind, message, { phase }));
      }, seconds * 1000);
    };
    const onAbort = () => {
      xhr.abort();
      finish(reject, new RequestFailure("aborted", "stopped", { phase }));
    };
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener("abort", onAbort);

    xhr.open(method, url, true);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    const bodySent = () => {
      arm(replyTimeoutS, "timeout", "the server took too long to answer");
      onBodySent?.();
    };
    if (body) {
      arm(stallS, "stalled", "the connection stalled");
      xhr.upload.onprogress = (event) => {
        arm(stallS, "stalled", "the connection stalled");
        onProgress?.(event.loaded);
      };
      xhr.upload.onload = () => {
        onProgress?.(body.size);
        bodySent();
      };
    } else {
      bodySent();
    }
    xhr.onload = () => {
      const response = {
        status: xhr.status,
        header: (name) => xhr.getResponseHeader(name),
        body: parseBody(xhr),
      };
      finish(resolve, response);
    };
    xhr.onerror = () => finish(reject, new RequestFailure("network", "no answer from the server", { phase }));
    xhr.onabort = () => finish(reject, new RequestFailure("aborted", "stopped", { phase }));
    xhr.send(body);
  });
}

function failureOf(response, phase) {
  const body = response.body;
  const message = (body && typeof body.error === "string" && body.error) || `HTTP ${response.status}`;
  return new RequestFailure("http", message, {
    status: response.status,
    retryAfterS: parseRetryAfter(response.header("Retry-After")) ?? (body?.retry_after ?? null),
    body,
    phase,
  });
}

// Sleeps `seconds` unless the signal aborts or wake() is called first.
function pause(seconds, signal, wakeSlot) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      wakeSlot.wake = null;
      resolve();
    };
    const timer = setTimeout(done, seconds * 1000);
    signal?.addEventListener("abort", done);
    wakeSlot.wake = done;
  });
}

// One file's upload. Events (all optional, via `onEvent(type, detail)`):
//   created {url, expires}      the server made the upload; remember `url` to resume later
//   ready {url}                 about to send bytes (the place to look up the part size)
//   progress {offset, sent}     `offset`: bytes the server has; `sent`: plus this request's bytes
//   finishing {}                the last byte went out; the server answers once Notion holds it
//   retrying {failure, waitS, attempt}
//   restarting {failure}        the upload is gone on the server; a new one is created
//   complete {url, notionFileUploadId}
//   failed {failure}            waiting will not help (401, 413, …); start() may be called again
export class Upload {
  constructor(file, options) {
    this.file = file;
    this.endpoint = options.endpoint;
    this.url = options.url || null;
    this.headers = options.headers || (() => ({}));
    this.metadata = options.metadata || { filename: file.name, filetype: file.type };
    this.chunkSize = options.chunkSize || 8 * MIB;
    this.retry = options.retry || {};
    this.maxRestarts = options.maxRestarts ?? 2;
    this.stallS = options.stallS ?? 60;
    this.replyTimeoutS = options.replyTimeoutS ?? 120;
    this.finalReplyTimeoutS = options.finalReplyTimeoutS ?? 600;
    this.onEvent = options.onEvent || (() => {});
    this.offset = 0;
    this.complete = false;
    this.notionFileUploadId = null;
    this.controller = null;
    this.wakeSlot = { wake: null };
  }

  get running() {
    return this.controller !== null;
  }

  emit(type, detail = {}) {
    try {
      this.onEvent(type, detail);
    } catch (error) {
      console.error("upload event handler failed", type, error);
    }
  }

  // Runs until the upload is complete, fails for good, or stop() is called.
  async start() {
    if (this.controller || this.complete) return;
    const controller = new AbortController();
    this.controller = controller;
    try {
      await this.run(controller.signal);
    } finally {
      if (this.controller === controller) this.controller = null;
    }
  }

  // Stops at once (the request in flight is dropped; the server keeps what it received).
  stop() {
    this.controller?.abort();
    this.controller = null;
  }

  // Skips the current backoff wait (e.g. the browser came back online).
  wake() {
    this.wakeSlot.wake?.();
  }

  // Stops and asks the server to discard the upload. True when the server no longer has it.
  async terminate() {
    this.stop();
    if (!this.url) return true;
    try {
      const response = await request({
        method: "DELETE", url: this.url, headers: this.requestHeaders(), phase: "delete", replyTimeoutS: 30,
      });
      return response.status === 204 || response.status === 404 || response.status === 410;
    } catch {
      return false;
    }
  }

  requestHeaders(extra = {}) {
    return { ...this.headers(), "Tus-Resumable": TUS_VERSION, ...extra };
  }

  async run(signal) {
    let attempt = 0;
    let restarts = 0;
    let needOffset = Boolean(this.url); // a remembered upload: ask the server where it stands
    let announced = false;
    while (!signal.aborted) {
      try {
        if (!this.url) {
          await this.create(signal);
          announced = false;
        } else if (needOffset) {
          await this.head(signal);
        }
        needOffset = false;
        if (!this.complete) {
          if (!announced) {
            await this.onEventAsync("ready", { url: this.url });
            announced = true;
          }
          await this.patch(signal);
          attempt = 0;
        }
        if (this.complete) {
          this.emit("complete", { url: this.url, notionFileUploadId: this.notionFileUploadId });
          return;
        }
      } catch (error) {
        if (signal.aborted) return;
        const failure = error instanceof RequestFailure
          ? error : new RequestFailure("protocol", String(error?.message || error));
        const action = decide(failure);
        if (action === "restart" && restarts < this.maxRestarts) {
          restarts += 1;
          this.url = null;
          this.offset = 0;
          this.emit("restarting", { failure });
          this.emit("progress", { offset: 0, sent: 0 });
          continue;
        }
        if (action !== "retry") {
          this.emit("failed", { failure });
          return;
        }
        attempt += 1;
        const waitS = Math.max(backoffS(attempt, this.retry), Math.min(failure.retryAfterS ?? 0, 300));
        this.emit("retrying", { failure, waitS, attempt });
        await pause(waitS, signal, this.wakeSlot);
        needOffset = Boolean(this.url);
      }
    }
  }

  async onEventAsync(type, detail) {
    // "ready" may return a promise (the page looks up the part size); wait for it, ignore errors.
    try {
      await this.onEvent(type, detail);
    } catch (error) {
      console.error("upload event handler failed", type, error);
    }
  }

  async create(signal) {
    const response = await request({
      method: "POST",
      url: this.endpoint,
      signal,
      phase: "create",
      headers: this.requestHeaders({
        "Upload-Length": String(this.file.size),
        "Upload-Metadata": encodeMetadata(this.metadata),
      }),
    });
    if (response.status !== 201) throw failureOf(response, "create");
    const location = response.header("Location");
    if (!location) throw new RequestFailure("protocol", "the server did not say where the upload is", { phase: "create" });
    const url = new URL(location, new URL(this.endpoint, document.baseURI));
    // Behind a router that ends TLS without saying so (X-Forwarded-Proto), the server names
    // itself with http:, which an https page may not call; its own scheme is the one that works.
    if (url.host === window.location.host && url.protocol !== window.location.protocol) {
      url.protocol = window.location.protocol;
    }
    this.url = url.href;
    this.offset = 0;
    this.emit("created", { url: this.url, expires: response.header("Upload-Expires") });
  }

  async head(signal) {
    const response = await request({ method: "HEAD", url: this.url, signal, phase: "head", headers: this.requestHeaders() });
    if (response.status !== 200 && response.status !== 204) throw failureOf(response, "head");
    const length = response.header("Upload-Length");
    if (length !== null && Number(length) !== this.file.size) {
      // The remembered address belongs to another file: treat it as gone.
      throw new RequestFailure("http", "the upload on the server is for a different file", { status: 410, phase: "head" });
    }
    this.takeOffset(response, "head");
  }

  async patch(signal) {
    const start = this.offset;
    const end = Math.min(this.file.size, start + Math.max(1, this.chunkSize));
    const chunk = this.file.slice(start, end);
    const last = end === this.file.size;
    const response = await request({
      method: "PATCH",
      url: this.url,
      body: chunk,
      signal,
      phase: "patch",
      stallS: this.stallS,
      replyTimeoutS: last ? this.finalReplyTimeoutS : this.replyTimeoutS,
      headers: this.requestHeaders({
        "Upload-Offset": String(start),
        "Content-Type": "application/offset+octet-stream",
      }),
      onProgress: (loaded) => this.emit("progress", { offset: start, sent: start + loaded }),
      onBodySent: () => {
        if (last) this.emit("finishing");
      },
    });
    if (response.status !== 204) throw failureOf(response, "patch");
    const before = start;
    this.takeOffset(response, "patch");
    if (this.offset < before) {
      throw new RequestFailure("protocol", "the server went back to an earlier offset", { phase: "patch" });
    }
  }

  takeOffset(response, phase) {
    const offset = Number(response.header("Upload-Offset"));
    if (!Number.isInteger(offset) || offset < 0 || offset > this.file.size) {
      throw new RequestFailure("protocol", "the server did not send a usable Upload-Offset", { phase });
    }
    this.offset = offset;
    this.notionFileUploadId = response.header("Notion-File-Upload-Id") || this.notionFileUploadId;
    this.complete = offset === this.file.size;
    this.emit("progress", { offset, sent: offset });
  }
}
