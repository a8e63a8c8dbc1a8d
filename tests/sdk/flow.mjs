// Drives the Notion emulator with Notion's official JavaScript SDK (@notionhq/client), through
// the whole file upload flow and its documented refusals. Run by tests/test_notion_sdk.py:
//
//   node tests/sdk/flow.mjs --base-url http://127.0.0.1:PORT --token emulator-token
//
// Prints one JSON summary on stdout: {sdk_version, node_version, checks: [{name, ok, expected,
// actual}], uploads: {label: {id, sha256, size}}, wire: {...}, requests: [...]}. Exits 0 when
// every check passed, 1 when one failed (the failures are named on stderr), 2 on a crash (the
// error on stderr; the summary so far still on stdout).
import { createHash, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import {
  APIErrorCode,
  APIResponseError,
  Client,
  collectPaginatedAPI,
  isNotionClientError,
} from "@notionhq/client";

const MIB = 1024 * 1024;
const NOTION_VERSION = "2025-09-03";
const PAGE_ID = "3c90c3cc-0d44-4b50-8888-8dd25736052a";

function parseArgs(argv) {
  const out = { baseUrl: process.env.EMULATOR_URL, token: process.env.EMULATOR_TOKEN ?? "emulator-token" };
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === "--base-url") out.baseUrl = argv[i + 1];
    else if (argv[i] === "--token") out.token = argv[i + 1];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!out.baseUrl) throw new Error("usage: node flow.mjs --base-url URL [--token TOKEN]");
  return out;
}

const args = parseArgs(process.argv.slice(2));
const sdkVersion = JSON.parse(
  readFileSync(new URL("./node_modules/@notionhq/client/package.json", import.meta.url), "utf8"),
).version;

const summary = {
  sdk_version: sdkVersion,
  node_version: process.version,
  notion_version: NOTION_VERSION,
  checks: [],
  uploads: {},
  wire: {},
  observations: {},
  requests: [],
};

// --- checks ---------------------------------------------------------------------------------

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function check(name, actual, expected) {
  const ok = same(actual, expected);
  summary.checks.push({ name, ok, expected, actual });
  return ok;
}

function checkTrue(name, condition, actual) {
  summary.checks.push({ name, ok: Boolean(condition), expected: true, actual: actual ?? Boolean(condition) });
  return Boolean(condition);
}

const sha256 = bytes => createHash("sha256").update(bytes).digest("hex");

// Deterministic, non-repeating bytes (so a misplaced part changes the sha256).
function pattern(size, seed) {
  const out = Buffer.alloc(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i += 1) {
    if (i % 4 === 0) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
    }
    out[i] = (x >>> ((i % 4) * 8)) & 0xff;
  }
  return out;
}

// --- the SDK's requests as they leave it ------------------------------------------------------

// A fetch that records what the SDK hands to fetch (method, path, headers, body kind), then
// calls the real fetch. Counting requests per path shows that no refusal was retried.
function recordingFetch(log) {
  return async (url, init = {}) => {
    const body = init.body;
    log.push({
      method: init.method,
      path: new URL(url).pathname + new URL(url).search,
      headers: { ...(init.headers ?? {}) },
      body: body === undefined ? "none" : typeof body === "string" ? "json" : body instanceof FormData ? "form-data" : typeof body,
    });
    return fetch(url, init);
  };
}

const requestLog = [];
const logger = (level, message, extra) => process.stderr.write(`[sdk ${level}] ${message} ${JSON.stringify(extra)}\n`);

// Retries kept short: a refusal is never retried by the SDK, and a stray 429 is retried at once.
const retry = { maxRetries: 2, initialRetryDelayMs: 50, maxRetryDelayMs: 500 };

function makeClient(auth, options = {}) {
  return new Client({
    auth,
    baseUrl: args.baseUrl,
    notionVersion: NOTION_VERSION,
    timeoutMs: 20_000,
    retry,
    fetch: recordingFetch(requestLog),
    logger,
    ...options,
  });
}

const notion = makeClient(args.token);

async function control(method, path, body) {
  const response = await fetch(`${args.baseUrl}/_emulator/${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`control ${method} ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

// Runs a call that must be refused; records the error's documented fields.
async function refusal(name, call, expectedCode, { status, messageIncludes } = {}) {
  const before = requestLog.length;
  try {
    const value = await call();
    check(`${name}: refused`, { resolved: value?.object ?? typeof value }, { code: expectedCode });
    return null;
  } catch (error) {
    const attempts = requestLog.length - before;
    check(`${name}: isNotionClientError`, isNotionClientError(error), true);
    check(`${name}: APIResponseError.isAPIResponseError`, APIResponseError.isAPIResponseError(error), true);
    check(`${name}: instanceof APIResponseError`, error instanceof APIResponseError, true);
    check(`${name}: code`, error.code, expectedCode);
    if (status !== undefined) check(`${name}: status`, error.status, status);
    check(`${name}: request_id is set`, typeof error.request_id === "string" && error.request_id.length > 0, true);
    check(`${name}: sent once (not retried)`, attempts, 1);
    if (messageIncludes !== undefined) {
      checkTrue(`${name}: message mentions ${JSON.stringify(messageIncludes)}`, String(error.message).includes(messageIncludes), error.message);
    }
    return error;
  }
}

// --- file upload object, as the SDK's FileUploadObjectResponse types it --------------------------

const UPLOAD_KEYS = {
  object: "string",
  id: "string",
  created_time: "string",
  created_by: "object",
  last_edited_time: "string",
  in_trash: "boolean",
  archived: "boolean",
  expiry_time: ["string", "null"],
  status: "string",
  filename: ["string", "null"],
  content_type: ["string", "null"],
  content_length: ["number", "null"],
};

function jsonType(value) {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

function checkUploadShape(name, upload) {
  const wrong = {};
  for (const [key, types] of Object.entries(UPLOAD_KEYS)) {
    const allowed = Array.isArray(types) ? types : [types];
    const actual = key in upload ? jsonType(upload[key]) : "missing";
    if (!allowed.includes(actual)) wrong[key] = { expected: allowed.join("|"), actual };
  }
  check(`${name}: fields typed as the SDK's FileUploadObjectResponse`, wrong, {});
}

// --- the flow ---------------------------------------------------------------------------------

async function usersMe() {
  const me = await notion.users.me({});
  check("users.me: object", me.object, "user");
  check("users.me: type", me.type, "bot");
  check("users.me: bot.workspace_limits.max_file_upload_size_in_bytes is a number",
    typeof me.bot?.workspace_limits?.max_file_upload_size_in_bytes, "number");
  summary.max_file_upload_size_in_bytes = me.bot?.workspace_limits?.max_file_upload_size_in_bytes;
  summary.bot_id = me.id;
  return me;
}

// create + send of a single_part upload; checks the objects create and send answer.
async function singlePart(label, filename, contentType, bytes) {
  const created = await notion.fileUploads.create({ mode: "single_part", filename, content_type: contentType });
  check(`${label} create: status`, created.status, "pending");
  check(`${label} create: filename`, created.filename, filename);
  check(`${label} create: content_type`, created.content_type, contentType);
  check(`${label} create: content_length before any byte`, created.content_length, null);
  checkTrue(`${label} create: upload_url ends with /send`, String(created.upload_url).endsWith(`/v1/file_uploads/${created.id}/send`), created.upload_url);
  check(`${label} create: no complete_url`, "complete_url" in created, false);
  checkUploadShape(`${label} create`, created);
  const sent = await notion.fileUploads.send({
    file_upload_id: created.id,
    file: { filename, data: new Blob([bytes], { type: contentType }) },
  });
  check(`${label} send: id`, sent.id, created.id);
  check(`${label} send: status`, sent.status, "uploaded");
  check(`${label} send: content_length`, sent.content_length, bytes.length);
  check(`${label} send: no upload_url once uploaded`, "upload_url" in sent, false);
  checkUploadShape(`${label} send`, sent);
  summary.uploads[label] = { id: created.id, sha256: sha256(bytes), size: bytes.length, filename, content_type: contentType };
  return sent;
}

async function multiPart() {
  const filename = "notes.txt";
  const parts = [pattern(5 * MIB, 1), pattern(5 * MIB + 12345, 2), pattern(777_777, 3)];
  const whole = Buffer.concat(parts);
  const created = await notion.fileUploads.create({
    mode: "multi_part", filename, content_type: "text/plain", number_of_parts: parts.length,
  });
  check("multi_part create: status", created.status, "pending");
  check("multi_part create: number_of_parts", created.number_of_parts, { total: 3, sent: 0 });
  checkTrue("multi_part create: complete_url ends with /complete",
    String(created.complete_url).endsWith(`/v1/file_uploads/${created.id}/complete`), created.complete_url);
  checkUploadShape("multi_part create", created);

  // Out of order (3, 1, 2) and concurrently: all three sends in flight together.
  const order = [3, 1, 2];
  const answers = await Promise.all(order.map(n => notion.fileUploads.send({
    file_upload_id: created.id,
    part_number: String(n),
    file: { filename, data: new Blob([parts[n - 1]], { type: "text/plain" }) },
  })));
  check("multi_part sends: every answer still pending", answers.map(a => a.status), ["pending", "pending", "pending"]);
  check("multi_part sends: total stays 3", answers.map(a => a.number_of_parts.total), [3, 3, 3]);
  check("multi_part sends: the sent counts seen are 1, 2 and 3 in some order",
    answers.map(a => a.number_of_parts.sent).sort(), [1, 2, 3]);
  const record = await control("GET", `uploads/${created.id}`);
  checkTrue("multi_part sends: the emulator saw at least two sends at once", record.max_concurrent_sends >= 2, record.max_concurrent_sends);

  const beforeComplete = await notion.fileUploads.retrieve({ file_upload_id: created.id });
  check("multi_part retrieve before complete: status", beforeComplete.status, "pending");
  check("multi_part retrieve before complete: number_of_parts", beforeComplete.number_of_parts, { total: 3, sent: 3 });
  check("multi_part retrieve before complete: content_length", beforeComplete.content_length, whole.length);

  const completed = await notion.fileUploads.complete({ file_upload_id: created.id });
  check("multi_part complete: status", completed.status, "uploaded");
  check("multi_part complete: content_length", completed.content_length, whole.length);
  check("multi_part complete: number_of_parts", completed.number_of_parts, { total: 3, sent: 3 });
  check("multi_part complete: no complete_url once uploaded", "complete_url" in completed, false);
  checkUploadShape("multi_part complete", completed);

  const retrieved = await notion.fileUploads.retrieve({ file_upload_id: created.id });
  check("multi_part retrieve: status", retrieved.status, "uploaded");
  check("multi_part retrieve: filename", retrieved.filename, filename);
  check("multi_part retrieve: content_type", retrieved.content_type, "text/plain");
  check("multi_part retrieve: content_length", retrieved.content_length, whole.length);
  checkTrue("multi_part retrieve: expiry_time is set before it is attached", typeof retrieved.expiry_time === "string", retrieved.expiry_time);
  checkUploadShape("multi_part retrieve", retrieved);
  summary.uploads.multi_part = { id: created.id, sha256: sha256(whole), size: whole.length, filename, content_type: "text/plain" };
  return completed;
}

async function listing(pendingIds, uploadedIds) {
  // A status filter and pagination by hand: page_size 2, following next_cursor.
  const seen = [];
  let cursor;
  let pages = 0;
  for (;;) {
    const page = await notion.fileUploads.list({ status: "pending", page_size: 2, start_cursor: cursor });
    pages += 1;
    check(`list pending page ${pages}: object`, page.object, "list");
    check(`list pending page ${pages}: type`, page.type, "file_upload");
    checkTrue(`list pending page ${pages}: at most page_size results`, page.results.length <= 2, page.results.length);
    check(`list pending page ${pages}: has_more matches next_cursor`, page.has_more, page.next_cursor !== null);
    seen.push(...page.results);
    if (!page.has_more) break;
    cursor = page.next_cursor;
    if (pages > 20) break;
  }
  check("list pending: every result is pending", [...new Set(seen.map(u => u.status))], ["pending"]);
  check("list pending: exactly the pending uploads, newest first", seen.map(u => u.id), [...pendingIds].reverse());
  check("list pending: pages of 2", pages, Math.ceil(pendingIds.length / 2));

  // start_cursor: starting at the second page's cursor gives the rest.
  const first = await notion.fileUploads.list({ status: "pending", page_size: 1 });
  const rest = await notion.fileUploads.list({ status: "pending", page_size: 100, start_cursor: first.next_cursor });
  check("list pending from start_cursor: the rest, in order", [first, rest].flatMap(p => p.results.map(u => u.id)), [...pendingIds].reverse());

  // The SDK's own pagination helper over another status.
  const uploaded = await collectPaginatedAPI(notion.fileUploads.list, { status: "uploaded", page_size: 3 });
  check("list uploaded (collectPaginatedAPI): every result is uploaded", [...new Set(uploaded.map(u => u.status))], ["uploaded"]);
  check("list uploaded (collectPaginatedAPI): exactly the uploaded uploads", uploaded.map(u => u.id).sort(), [...uploadedIds].sort());
  if (uploaded[0]) checkUploadShape("list uploaded result", uploaded[0]);
}

async function appendBlocks(media) {
  const children = media.map(({ type, label }) => ({
    type,
    [type]: { type: "file_upload", file_upload: { id: summary.uploads[label].id } },
  }));
  const appended = await notion.blocks.children.append({ block_id: PAGE_ID, children });
  check("blocks.children.append: object", appended.object, "list");
  check("blocks.children.append: block types", appended.results.map(b => b.type), media.map(m => m.type));
  check("blocks.children.append: every result is a block", [...new Set(appended.results.map(b => b.object))], ["block"]);
  check("blocks.children.append: media are Notion-hosted files",
    appended.results.map(b => b[b.type]?.type), media.map(() => "file"));

  // Listed back, two at a time.
  const listed = [];
  let cursor;
  for (let i = 0; i < 10; i += 1) {
    const page = await notion.blocks.children.list({ block_id: PAGE_ID, page_size: 2, start_cursor: cursor });
    listed.push(...page.results);
    if (!page.has_more) break;
    cursor = page.next_cursor;
  }
  check("blocks.children.list: the appended blocks, in order", listed.map(b => b.id), appended.results.map(b => b.id));
  check("blocks.children.list: types", listed.map(b => b.type), media.map(m => m.type));
  const hosted = listed.map(b => b[b.type]?.file ?? {});
  check("blocks.children.list: each carries file.url and file.expiry_time",
    hosted.map(f => [typeof f.url, typeof f.expiry_time]), media.map(() => ["string", "string"]));

  // The hosted url serves the bytes that were sent.
  const downloaded = [];
  for (const f of hosted) {
    const response = await fetch(f.url);
    downloaded.push(response.ok ? sha256(Buffer.from(await response.arrayBuffer())) : `HTTP ${response.status}`);
  }
  check("blocks: each block's file.url serves the uploaded bytes", downloaded, media.map(m => summary.uploads[m.label].sha256));

  // Attached uploads no longer expire.
  const after = [];
  for (const { label } of media) after.push((await notion.fileUploads.retrieve({ file_upload_id: summary.uploads[label].id })).expiry_time);
  check("retrieve after append: expiry_time is null", after, media.map(() => null));
}

async function refusals() {
  const small = pattern(1024, 9);
  const big = pattern(5 * MIB, 10);

  // A middle part under 5 MiB.
  const three = await notion.fileUploads.create({ mode: "multi_part", filename: "parts.txt", content_type: "text/plain", number_of_parts: 3 });
  await refusal("small middle part", () => notion.fileUploads.send({
    file_upload_id: three.id, part_number: "2", file: { filename: "parts.txt", data: new Blob([small], { type: "text/plain" }) },
  }), APIErrorCode.ValidationError, { status: 400 });

  // More than 1000 parts.
  await refusal("number_of_parts 1001", () => notion.fileUploads.create({
    mode: "multi_part", filename: "many.txt", content_type: "text/plain", number_of_parts: 1001,
  }), APIErrorCode.ValidationError, { status: 400 });

  // Complete with part 2 of 3 missing.
  await notion.fileUploads.send({
    file_upload_id: three.id, part_number: "1", file: { filename: "parts.txt", data: new Blob([big], { type: "text/plain" }) },
  });
  await notion.fileUploads.send({
    file_upload_id: three.id, part_number: "3", file: { filename: "parts.txt", data: new Blob([small], { type: "text/plain" }) },
  });
  await refusal("complete with a missing part", () => notion.fileUploads.complete({ file_upload_id: three.id }),
    APIErrorCode.ValidationError, { status: 400, messageIncludes: "2" });
  const still = await notion.fileUploads.retrieve({ file_upload_id: three.id });
  check("complete with a missing part: upload still pending", still.status, "pending");
  check("complete with a missing part: number_of_parts", still.number_of_parts, { total: 3, sent: 2 });

  // A bad token.
  const stranger = makeClient("secret_not-a-valid-token");
  await refusal("bad token: users.me", () => stranger.users.me({}), APIErrorCode.Unauthorized, { status: 401 });
  await refusal("bad token: fileUploads.create", () => stranger.fileUploads.create({ mode: "single_part", filename: "x.txt" }),
    APIErrorCode.Unauthorized, { status: 401 });

  // Unknown ids.
  const unknown = randomUUID();
  await refusal("unknown id: retrieve", () => notion.fileUploads.retrieve({ file_upload_id: unknown }),
    APIErrorCode.ObjectNotFound, { status: 404 });
  await refusal("unknown id: send", () => notion.fileUploads.send({
    file_upload_id: unknown, file: { filename: "x.txt", data: new Blob(["hello"], { type: "text/plain" }) },
  }), APIErrorCode.ObjectNotFound, { status: 404 });
  await refusal("unknown id: complete", () => notion.fileUploads.complete({ file_upload_id: unknown }),
    APIErrorCode.ObjectNotFound, { status: 404 });

  // Not a check, only reported: the SDK also takes `data` as a string, which undici's FormData
  // sends with a file part Content-Type of application/octet-stream.
  const loose = await notion.fileUploads.create({ mode: "single_part", filename: "string.txt", content_type: "text/plain" });
  try {
    const sent = await notion.fileUploads.send({ file_upload_id: loose.id, file: { filename: "string.txt", data: "plain string data" } });
    summary.observations.string_data_send = { status: sent.status };
  } catch (error) {
    summary.observations.string_data_send = { code: error.code, message: error.message };
  }

  return three.id;
}

async function expiry() {
  const late = await notion.fileUploads.create({ mode: "single_part", filename: "late.txt", content_type: "text/plain" });
  const clock = await control("POST", "clock", { advance_s: 3700 });
  summary.clock = clock;
  await refusal("send after expiry", () => notion.fileUploads.send({
    file_upload_id: late.id, file: { filename: "late.txt", data: new Blob(["too late"], { type: "text/plain" }) },
  }), APIErrorCode.ValidationError, { status: 400, messageIncludes: "expired" });
  const retrieved = await notion.fileUploads.retrieve({ file_upload_id: late.id });
  check("after expiry: retrieve says expired", retrieved.status, "expired");
  const expired = await collectPaginatedAPI(notion.fileUploads.list, { status: "expired" });
  checkTrue("after expiry: list status=expired includes it", expired.some(u => u.id === late.id), expired.map(u => u.id));
  summary.uploads.expired = { id: late.id, sha256: null, size: 0, filename: "late.txt", content_type: "text/plain" };
}

// --- what goes on the wire: a throwaway HTTP server records the SDK's raw requests ----------------

async function wire() {
  const seen = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", c => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method, path: req.url, headers: req.headers, body_bytes: body.length,
        body_head: body.subarray(0, 300).toString("latin1") });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "file_upload", id: "00000000-0000-4000-8000-000000000000", status: "pending" }));
    });
  });
  await new Promise(resolve => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  // The plain SDK: its default fetch (Node's undici), no recording wrapper.
  const plain = new Client({ auth: "wire-token", baseUrl: `http://127.0.0.1:${port}`, retry: false, logger });
  try {
    await plain.users.me({});
    await plain.fileUploads.create({ mode: "multi_part", filename: "a.txt", content_type: "text/plain", number_of_parts: 2 });
    await plain.fileUploads.send({ file_upload_id: "00000000-0000-4000-8000-000000000000", part_number: "2",
      file: { filename: "a.txt", data: new Blob(["hello"], { type: "text/plain" }) } });
    await plain.fileUploads.send({ file_upload_id: "00000000-0000-4000-8000-000000000000",
      file: { filename: "b.txt", data: "untyped string data" } });
    await plain.fileUploads.complete({ file_upload_id: "00000000-0000-4000-8000-000000000000" });
  } finally {
    server.close();
  }
  const [me, create, send, sendString, complete] = seen;
  summary.wire = { users_me: me, create, send, send_string_data: sendString, complete };
  const ua = `notionhq-client/${sdkVersion}`;
  check("wire: user-agent", seen.map(r => r.headers["user-agent"]), seen.map(() => ua));
  check("wire: notion-version", seen.map(r => r.headers["notion-version"]), seen.map(() => NOTION_VERSION));
  check("wire: authorization", seen.map(r => r.headers.authorization), seen.map(() => "Bearer wire-token"));
  check("wire: complete has no body", complete.body_bytes, 0);
  check("wire: complete has no content-type", complete.headers["content-type"] ?? null, null);
  check("wire: complete path", `${complete.method} ${complete.path}`, "POST /v1/file_uploads/00000000-0000-4000-8000-000000000000/complete");
  check("wire: create is JSON", create.headers["content-type"], "application/json");
  checkTrue("wire: send is multipart/form-data with a boundary", /^multipart\/form-data; boundary=/.test(send.headers["content-type"]), send.headers["content-type"]);
  checkTrue("wire: send's file part carries its Blob type", send.body_head.includes("Content-Type: text/plain"), send.body_head);
}

// --- main -----------------------------------------------------------------------------------

async function main() {
  await usersMe();

  const png = Buffer.concat([Buffer.from("89504e470d0a1a0a", "hex"), pattern(4000, 4)]);
  const pdf = Buffer.concat([Buffer.from("%PDF-1.4\n"), pattern(3000, 5), Buffer.from("\n%%EOF\n")]);
  const mp3 = Buffer.concat([Buffer.from("ID3"), pattern(6000, 6)]);
  const mp4 = Buffer.concat([Buffer.from("\x00\x00\x00\x18ftypmp42", "latin1"), pattern(8000, 7)]);
  await singlePart("file", "hello.txt", "text/plain", Buffer.from("hello from the official Notion SDK\n"));
  await singlePart("image", "pixel.png", "image/png", png);
  await singlePart("pdf", "doc.pdf", "application/pdf", pdf);
  await singlePart("audio", "sound.mp3", "audio/mpeg", mp3);
  await singlePart("video", "clip.mp4", "video/mp4", mp4);
  await multiPart();

  // Pending uploads for the list: created, nothing sent.
  const pendingIds = [];
  for (let i = 0; i < 5; i += 1) {
    pendingIds.push((await notion.fileUploads.create({ mode: "single_part", filename: `pending-${i}.txt`, content_type: "text/plain" })).id);
  }
  const uploadedIds = ["file", "image", "pdf", "audio", "video", "multi_part"].map(l => summary.uploads[l].id);
  await listing(pendingIds, uploadedIds);

  await appendBlocks([
    { type: "file", label: "file" },
    { type: "image", label: "image" },
    { type: "pdf", label: "pdf" },
    { type: "audio", label: "audio" },
    { type: "video", label: "video" },
    { type: "file", label: "multi_part" },
  ]);

  const incomplete = await refusals();
  summary.uploads.incomplete = { id: incomplete, sha256: null, size: null, filename: "parts.txt", content_type: "text/plain" };
  await expiry();

  // Every upload that was finished: the emulator's record has the bytes that were sent.
  for (const [label, u] of Object.entries(summary.uploads)) {
    if (u.sha256 === null) continue;
    const record = await control("GET", `uploads/${u.id}`);
    check(`emulator record ${label}: sha256 and size`, [record.sha256, record.size], [u.sha256, u.size]);
  }

  await wire();
}

let crashed = null;
try {
  await main();
} catch (error) {
  crashed = error;
  summary.crash = { name: error?.name, code: error?.code, status: error?.status, message: String(error?.message ?? error), stack: error?.stack };
}
summary.requests = requestLog.map(r => ({ method: r.method, path: r.path, body: r.body }));
summary.failed = summary.checks.filter(c => !c.ok).map(c => c.name);
process.stdout.write(`${JSON.stringify(summary, null, 1)}\n`);
if (crashed) {
  process.stderr.write(`flow.mjs crashed: ${crashed?.stack ?? crashed}\n`);
  process.exitCode = 2;
} else if (summary.failed.length) {
  for (const c of summary.checks.filter(x => !x.ok)) {
    process.stderr.write(`FAILED ${c.name}: expected ${JSON.stringify(c.expected)}, got ${JSON.stringify(c.actual)}\n`);
  }
  process.exitCode = 1;
} else {
  process.stderr.write(`flow.mjs: all ${summary.checks.length} checks passed\n`);
}
