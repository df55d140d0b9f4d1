// Ferry's upload page: presign with Ferry, PUT straight to the bucket, confirm with Ferry.
// No framework and no build step: the binary embeds this file as it is.

const $ = (id) => document.getElementById(id);
const session = { mode: "dev", user: null, token: null, config: null };

/** A refusal from Ferry's API, with its stable code. */
class ApiFailure extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || "";
  }
}

function authHeaders() {
  if (session.mode === "jwt") return { Authorization: `Bearer ${session.token}` };
  return { "X-User-Id": session.user };
}

async function api(path, { method = "GET", body, accept } = {}) {
  const headers = { ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (accept) headers.Accept = accept;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiFailure(0, { code: "network", error: "network" });
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiFailure(response.status, data);
  return data;
}

const units = ["B", "KB", "MB", "GB", "TB"];
function humanSize(bytes) {
  let n = Number(bytes) || 0;
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Plain words for every failure a user can meet. */
function describe(err) {
  const limit = session.config ? humanSize(session.config.maxFileSize) : "the limit";
  switch (err.code) {
    case "file-too-large": case "object-too-large": return `This file is too large: the limit is ${limit}.`;
    case "content-type-not-allowed": case "object-type-not-allowed": return "Files of this type are not allowed here.";
    case "upload-expired": return "The upload took too long and expired. Press Retry to start again.";
    case "upload-not-found": return "The file did not reach storage. Press Retry.";
    case "missing-token": case "invalid-token": case "token-expired": return "Your sign-in is missing or has expired. Sign in again.";
    case "network": return "Network error: Ferry could not be reached. Check your connection and press Retry.";
    case "store-blocked": return "The storage service refused the upload from this page (network error or CORS not allowing this site).";
    case "store-refused": return "The storage service refused the upload link (it may have expired). Press Retry.";
    case "database-unavailable": case "store-unavailable": return "The service is briefly unavailable. Press Retry in a moment.";
    default: return err.message || "Something went wrong.";
  }
}

// ---------------------------------------------------------------- sign-in

function showSignedIn(label) {
  $("whoami").textContent = label;
  $("upload").hidden = false;
  $("files").hidden = false;
  refreshList();
}

$("dev-form").addEventListener("submit", (event) => {
  event.preventDefault();
  session.user = $("dev-user").value.trim() || session.config.devUser;
  sessionStorage.setItem("ferry-user", session.user);
  showSignedIn(`Signed in as ${session.user} (dev mode).`);
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  session.token = $("token").value.trim();
  sessionStorage.setItem("ferry-token", session.token);
  showSignedIn("Signed in with your token.");
});

// ---------------------------------------------------------------- uploads

function transferRow(file) {
  const li = document.createElement("li");
  li.innerHTML = `
    <span class="transfer-name"></span>
    <span class="transfer-actions">
      <button type="button" class="secondary cancel">Cancel</button>
      <button type="button" class="secondary retry" hidden>Retry</button>
    </span>
    <progress max="100" value="0"></progress>
    <span class="transfer-status" role="status">Waiting…</span>`;
  li.querySelector(".transfer-name").textContent = file.name;
  const progress = li.querySelector("progress");
  progress.setAttribute("aria-label", `Upload progress of ${file.name}`);
  $("transfers").prepend(li);
  return {
    li,
    progress,
    status: li.querySelector(".transfer-status"),
    cancel: li.querySelector(".cancel"),
    retry: li.querySelector(".retry"),
  };
}

/** Shows bytes sent out of `total`, with the speed so far. */
function progressReporter(row, total) {
  const started = performance.now();
  return (sent) => {
    const percent = total > 0 ? Math.floor((sent / total) * 100) : 100;
    row.progress.value = percent;
    const seconds = (performance.now() - started) / 1000;
    const speed = seconds > 0 ? `${humanSize(sent / seconds)}/s` : "";
    row.status.textContent = `${percent}% of ${humanSize(total)} · ${speed}`;
  };
}

/** What a cancelled transfer's steps reject with. */
const cancelled = () => new ApiFailure(0, { code: "cancelled", error: "Cancelled." });

/** Stops a transfer: requests in flight are aborted, hashing ends, and no step starts after
 *  (a part waiting for a fresh URL, a file whose hash is still being computed). */
function stopTransfer(transfer) {
  transfer.stopped = true;
  transfer.hashing?.();
  for (const xhr of transfer.requests) xhr.abort();
}

/** PUTs `body` to a presigned URL with the signed `headers`; resolves with the store's ETag. */
function sendToBucket(url, body, headers, onProgress, transfer) {
  if (transfer.stopped) return Promise.reject(cancelled());
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      transfer.requests.delete(xhr);
      if (xhr.status >= 200 && xhr.status < 300) resolve((xhr.getResponseHeader("ETag") || "").replaceAll('"', ""));
      else reject(new ApiFailure(xhr.status, { code: "store-refused" }));
    };
    xhr.onerror = () => { transfer.requests.delete(xhr); reject(new ApiFailure(0, { code: "store-blocked" })); };
    xhr.onabort = () => { transfer.requests.delete(xhr); reject(cancelled()); };
    transfer.requests.add(xhr);
    xhr.send(body);
  });
}

/** The file's MD5 (base64), hashed by a worker so the page stays responsive. */
function md5Of(file, row, transfer) {
  return new Promise((resolve, reject) => {
    if (transfer.stopped) return reject(cancelled());
    const worker = new Worker("/md5-worker.js");
    const finish = () => { worker.terminate(); transfer.hashing = null; };
    transfer.hashing = () => { finish(); reject(cancelled()); };
    worker.onmessage = ({ data }) => {
      if (data.md5) { finish(); resolve(data.md5); }
      else if (data.error) { finish(); reject(new Error(data.error)); }
      else row.status.textContent = `Checking… ${Math.floor((data.done / data.total) * 100)}%`;
    };
    worker.onerror = (event) => { finish(); reject(new Error(event.message)); };
    worker.postMessage(file);
  });
}

/** One presigned PUT, then the guide's confirm. Files up to the configured size carry their
 *  MD5, signed into the URL: the bucket refuses bytes that changed on the way. */
async function uploadWhole(file, contentType, row, transfer) {
  const md5 = file.size <= session.config.checksumMaxSize ? await md5Of(file, row, transfer) : undefined;
  const presigned = await api("/presign-b2-upload", {
    method: "POST",
    body: { fileName: file.name, contentType, size: file.size, md5 },
  });
  await sendToBucket(presigned.presignedUrl, file, presigned.headers, progressReporter(row, file.size), transfer);
  row.status.textContent = "Saving…";
  await api("/save-b2-metadata", { method: "POST", body: { objectKey: presigned.objectKey } });
}

// ---------------------------------------------------------------- resuming
// Each unfinished multipart upload is remembered in this browser (key, upload id, part size),
// under the signed-in user and a fingerprint of the file (name, size, last modified). Choosing
// the same file again, after a reload or a failure, asks Ferry which parts the bucket has and
// sends only the others. Finished or cancelled uploads are forgotten, and so is any record past
// its upload's confirm window (`resumeWindowSeconds`), when the page loads or the file is chosen.

/** Who is signed in, for the resume records (a token's `sub`, read without verifying it). */
function whoAmI() {
  if (session.mode !== "jwt") return session.user;
  try {
    return JSON.parse(atob(session.token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/"))).sub || session.token;
  } catch {
    return session.token;
  }
}

const RESUME_PREFIX = "ferry-upload:";

function resumeKey(file) {
  return `${RESUME_PREFIX}${whoAmI()}:${file.name}:${file.size}:${file.lastModified}`;
}

/** Whether a resume record is past the window in which its upload could still be confirmed
 *  (records from before they carried a date count as past it). */
function resumeExpired(saved) {
  return !(saved?.startedAt > Date.now() - session.config.resumeWindowSeconds * 1000);
}

/** Forgets the resume records, of any user, whose uploads can no longer be confirmed: a file
 *  never chosen again leaves nothing behind in the browser for long. */
function forgetExpiredUploads() {
  for (const key of Object.keys(localStorage)) {
    if (!key.startsWith(RESUME_PREFIX)) continue;
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(key)); } catch { /* unreadable: forget it */ }
    if (resumeExpired(saved)) localStorage.removeItem(key);
  }
}

/** The remembered upload of this file and the parts that arrived, or a new upload. */
async function resumeOrStart(file, contentType) {
  const key = resumeKey(file);
  const saved = JSON.parse(localStorage.getItem(key) || "null");
  if (saved && resumeExpired(saved)) localStorage.removeItem(key);
  else if (saved) {
    try {
      const ids = { objectKey: saved.objectKey, uploadId: saved.uploadId };
      const { parts } = await api("/multipart/parts", { method: "POST", body: ids });
      return { ...saved, arrived: parts };
    } catch (err) {
      // Finished, aborted, expired or not this user's: start over.
      if (!["multipart-not-found", "upload-expired", "upload-not-issued"].includes(err.code)) throw err;
      localStorage.removeItem(key);
    }
  }
  const start = await api("/multipart/start", {
    method: "POST",
    body: { fileName: file.name, contentType, size: file.size },
  });
  const upload = {
    objectKey: start.objectKey, uploadId: start.uploadId, partSize: start.partSize, partCount: start.partCount, startedAt: Date.now(),
  };
  localStorage.setItem(key, JSON.stringify(upload));
  return { ...upload, arrived: [] };
}

/** Large files: parts straight to the bucket, three at a time, each retried twice (with a
 *  freshly signed URL, so a long upload outlives its URLs); a resumed upload skips the parts
 *  the bucket has. */
async function uploadInParts(file, contentType, row, transfer) {
  const upload = await resumeOrStart(file, contentType);
  const ids = { objectKey: upload.objectKey, uploadId: upload.uploadId };
  transfer.abandon = () => {
    localStorage.removeItem(resumeKey(file));
    return api("/multipart/abort", { method: "POST", body: ids }).catch(() => {});
  };
  const report = progressReporter(row, file.size);
  const sent = new Array(upload.partCount).fill(0);
  const sizeOf = (n) => Math.min(upload.partSize, file.size - (n - 1) * upload.partSize);
  const parts = upload.arrived.filter((p) => p.size === sizeOf(p.partNumber)).map(({ partNumber, etag }) => ({ partNumber, etag }));
  for (const { partNumber } of parts) sent[partNumber - 1] = sizeOf(partNumber);
  if (parts.length) row.status.textContent = `Resuming: ${parts.length} of ${upload.partCount} parts already uploaded.`;
  const done = new Set(parts.map((p) => p.partNumber));
  const numbers = Array.from({ length: upload.partCount }, (_, i) => i + 1).filter((n) => !done.has(n));
  const urlFor = async (partNumber) => {
    const { urls } = await api("/multipart/urls", { method: "POST", body: { ...ids, partNumbers: [partNumber] } });
    return urls[0].url;
  };
  for (let batch = 0; batch < numbers.length; batch += 100) {
    const { urls } = await api("/multipart/urls", {
      method: "POST",
      body: { ...ids, partNumbers: numbers.slice(batch, batch + 100) },
    });
    let next = 0;
    const worker = async () => {
      while (next < urls.length) {
        let { partNumber, url } = urls[next++];
        const from = (partNumber - 1) * upload.partSize;
        const blob = file.slice(from, from + sizeOf(partNumber));
        for (let attempt = 0; ; attempt += 1) {
          try {
            const etag = await sendToBucket(url, blob, {}, (bytes) => {
              sent[partNumber - 1] = bytes;
              report(sent.reduce((a, b) => a + b, 0));
            }, transfer);
            parts.push({ partNumber, etag });
            break;
          } catch (err) {
            if (err.code === "cancelled" || attempt >= 2) throw err;
            url = await urlFor(partNumber);
          }
        }
      }
    };
    await Promise.all([worker(), worker(), worker()]);
  }
  row.status.textContent = "Saving…";
  parts.sort((a, b) => a.partNumber - b.partNumber);
  await api("/multipart/complete", { method: "POST", body: { ...ids, parts } });
  localStorage.removeItem(resumeKey(file));
}

async function upload(file, row) {
  row.retry.hidden = true;
  row.cancel.hidden = false;
  row.status.className = "transfer-status";
  row.progress.value = 0;
  row.status.textContent = "Preparing…";
  const contentType = file.type || "application/octet-stream";
  const transfer = { requests: new Set(), abandon: null, hashing: null, stopped: false };
  row.cancel.onclick = () => stopTransfer(transfer);
  try {
    if (file.size > session.config.multipartThreshold) await uploadInParts(file, contentType, row, transfer);
    else await uploadWhole(file, contentType, row, transfer);
    row.progress.value = 100;
    row.status.textContent = `Uploaded (${humanSize(file.size)}).`;
    row.status.className = "transfer-status done";
    row.cancel.hidden = true;
    refreshList();
  } catch (err) {
    stopTransfer(transfer);
    // Cancelled: forget it. Failed otherwise: keep it, so Retry (or choosing the file again,
    // even after a reload) sends only the missing parts.
    if (err.code === "cancelled") transfer.abandon?.();
    row.status.textContent = describe(err);
    row.status.className = "transfer-status error";
    row.cancel.hidden = true;
    row.retry.hidden = false;
    row.retry.onclick = () => upload(file, row);
  }
}

function uploadAll(files) {
  for (const file of files) upload(file, transferRow(file));
}

const drop = $("dropzone");
$("file-input").addEventListener("change", (event) => {
  uploadAll([...event.target.files]);
  event.target.value = "";
});
$("choose").addEventListener("click", () => $("file-input").click());
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  uploadAll([...event.dataTransfer.files]);
});

// ---------------------------------------------------------------- the list

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function download(file) {
  try {
    const { url } = await api(`/files/${file.id}/download`, { accept: "application/json" });
    const link = document.createElement("a");
    link.href = url;
    link.download = file.fileName || "";
    document.body.append(link);
    link.click();
    link.remove();
  } catch (err) {
    $("files-error").textContent = describe(err);
  }
}

async function remove(file) {
  if (!confirm(`Delete ${file.fileName || file.objectKey}?`)) return;
  try {
    await api(`/files/${file.id}`, { method: "DELETE" });
    refreshList();
  } catch (err) {
    $("files-error").textContent = describe(err);
  }
}

/** What the user stores, against the limits (when there are any). */
async function refreshUsage() {
  try {
    const usage = await api("/usage");
    const files = usage.limits.files === null ? `${usage.files} files` : `${usage.files} of ${usage.limits.files} files`;
    const bytes = usage.limits.bytes === null
      ? humanSize(usage.bytes)
      : `${humanSize(usage.bytes)} of ${humanSize(usage.limits.bytes)}`;
    $("usage").textContent = `You store ${files}, ${bytes}.`;
  } catch (err) {
    $("usage").textContent = "";
  }
}

/** Files per page of the list; "Show more" fetches the next page (keyset, by `nextCursor`). */
const PAGE_SIZE = 50;
let nextCursor = null;

function fileRow(file) {
  const tr = document.createElement("tr");
  const name = file.fileName || file.objectKey;
  tr.append(cell(name, "name"), cell(humanSize(file.size)), cell(file.contentType || ""),
    cell(new Date(file.uploadTimestamp).toLocaleString()));
  const actions = cell("", "actions");
  const get = document.createElement("button");
  get.type = "button";
  get.className = "secondary";
  get.textContent = "Download";
  get.setAttribute("aria-label", `Download ${name}`);
  get.onclick = () => download(file);
  const del = document.createElement("button");
  del.type = "button";
  del.className = "danger";
  del.textContent = "Delete";
  del.setAttribute("aria-label", `Delete ${name}`);
  del.onclick = () => remove(file);
  actions.append(get, del);
  tr.append(actions);
  return tr;
}

/** The first page of the list (`more`: the next page, appended). */
async function refreshList(more = false) {
  if (!more) refreshUsage();
  try {
    const cursor = more && nextCursor ? `&cursor=${encodeURIComponent(nextCursor)}` : "";
    const page = await api(`/files?limit=${PAGE_SIZE}${cursor}`);
    $("files-error").textContent = "";
    const rows = $("file-rows");
    if (!more) rows.replaceChildren();
    for (const file of page.files) rows.append(fileRow(file));
    nextCursor = page.nextCursor;
    $("more-files").hidden = !nextCursor;
    $("no-files").hidden = rows.children.length > 0;
  } catch (err) {
    $("files-error").textContent = describe(err);
  }
}

$("more-files").addEventListener("click", () => refreshList(true));

// ---------------------------------------------------------------- start

async function start() {
  session.config = await (await fetch("/page-config")).json();
  session.mode = session.config.auth;
  forgetExpiredUploads();
  const types = session.config.allowedTypes.length ? session.config.allowedTypes.join(", ") : "any type";
  $("limits").textContent = `Up to ${humanSize(session.config.maxFileSize)} per file; ${types}.`;
  if (session.mode === "dev") {
    $("dev-form").hidden = false;
    $("dev-user").value = sessionStorage.getItem("ferry-user") || session.config.devUser;
  } else {
    $("token-form").hidden = false;
    const saved = sessionStorage.getItem("ferry-token");
    if (saved) {
      $("token").value = saved;
      session.token = saved;
      showSignedIn("Signed in with your token.");
    }
  }
}

start();
