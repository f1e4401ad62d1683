// The console's only script: resumable uploads over tus 1.0, with the session cookie.
// Served from the platform (no CDN); the page's Content-Security-Policy allows nothing else.
"use strict";

const PIECE = 128 * 1024; // bytes per PATCH: what a dropped connection costs at most
const ATTEMPTS = 8;

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

function b64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

function tusHeaders(extra) {
  return Object.assign(
    { "Tus-Resumable": "1.0.0", "X-CSRF-Token": document.body.dataset.csrf },
    extra || {}
  );
}

async function offsetOf(url) {
  const head = await fetch(url, { method: "HEAD", headers: tusHeaders() });
  if (!head.ok) throw new Error(`the upload is gone (${head.status})`);
  return Number(head.headers.get("Upload-Offset"));
}

async function upload(file, report) {
  const digest = hex(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
  const key = `tus:${file.name}:${file.size}:${digest}`;
  let url = localStorage.getItem(key);
  let offset = 0;
  if (url) {
    try { offset = await offsetOf(url); } catch (gone) { url = null; }
  }
  if (!url) {
    const created = await fetch(document.body.dataset.uploadUrl, {
      method: "POST",
      headers: tusHeaders({
        "Upload-Length": String(file.size),
        "Upload-Metadata": `filename ${b64(file.name)},filetype ${b64(file.type || "")},sha256 ${b64(digest)}`,
      }),
    });
    if (created.status !== 201) throw new Error(await created.text());
    url = created.headers.get("Location");
    localStorage.setItem(key, url);
  }
  let documentId = "";
  let failures = 0;
  while (offset < file.size || !documentId) {
    report(offset, file.size);
    let answer;
    try {
      answer = await fetch(url, {
        method: "PATCH",
        headers: tusHeaders({
          "Content-Type": "application/offset+octet-stream",
          "Upload-Offset": String(offset),
        }),
        body: file.slice(offset, offset + PIECE),
      });
    } catch (cut) {
      answer = null;
    }
    if (answer && answer.status === 204) {
      offset = Number(answer.headers.get("Upload-Offset"));
      documentId = answer.headers.get("Conductor-Document-Id") || "";
      failures = 0;
      continue;
    }
    if (answer && ![409, 500, 502, 503, 504].includes(answer.status)) {
      throw new Error(await answer.text());
    }
    failures += 1; // cut, or the offset moved: ask where the upload stands and go on from there
    if (failures > ATTEMPTS) throw new Error("the upload kept failing; try again later");
    await new Promise((done) => setTimeout(done, 200 * failures));
    offset = await offsetOf(url);
    report(offset, file.size, `resuming from byte ${offset}`);
  }
  localStorage.removeItem(key);
  return documentId;
}

document.addEventListener("DOMContentLoaded", () => {
  const start = document.getElementById("start-upload");
  if (start) {
    const input = document.getElementById("file");
    const progress = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    start.addEventListener("click", async () => {
      const file = input.files[0];
      if (!file) { status.textContent = "Choose a file first."; return; }
      progress.hidden = false;
      start.disabled = true;
      const report = (done, total, note) => {
        progress.value = total ? (100 * done) / total : 0;
        status.textContent = note || `${done} of ${total} bytes`;
      };
      try {
        const documentId = await upload(file, report);
        progress.value = 100;
        status.textContent = "Uploaded.";
        window.location.assign(`${document.body.dataset.prefix}/documents/${documentId}`);
      } catch (problem) {
        status.textContent = `Upload failed: ${problem.message}`;
      } finally {
        start.disabled = false;
      }
    });
  }
  const purpose = document.getElementById("purpose");
  if (purpose) purpose.addEventListener("change", () => purpose.form.submit());
});

// Progressive enhancements of the catalog and approvals pages: each works without them.

function formatLeft(seconds) {
  if (seconds <= 0) return "expired";
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  const words = [];
  let left = Math.round(seconds);
  for (const [unit, size] of units) {
    if (words.length === 3) break;
    if (left >= size || (unit === "s" && words.length === 0)) {
      words.push(`${Math.floor(left / size)} ${unit}`);
      left %= size;
    } else if (words.length) {
      words.push("");
    }
  }
  return words.filter(Boolean).join(" ");
}

function tickCountdowns() {
  for (const clock of document.querySelectorAll("time.countdown[data-ends-at]")) {
    const ends = Date.parse(clock.dataset.endsAt);
    if (!Number.isNaN(ends)) clock.textContent = formatLeft((ends - Date.now()) / 1000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const addRow = document.getElementById("add-row");
  const rows = document.querySelector("#overrides tbody");
  if (addRow && rows) {
    addRow.hidden = false;
    const more = document.getElementById("more-rows");
    if (more) more.hidden = true;
    addRow.addEventListener("click", () => {
      const last = rows.querySelector("tr.override:last-child");
      const row = last.cloneNode(true);
      for (const input of row.querySelectorAll("input")) input.value = "";
      rows.appendChild(row);
      row.querySelector("input").focus();
    });
  }

  const copy = document.getElementById("copy-share");
  if (copy) {
    const field = document.getElementById(copy.dataset.copy);
    const status = document.getElementById("copy-status");
    copy.hidden = false;
    copy.addEventListener("click", async () => {
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
        status.textContent = "Copied.";
      } catch (refused) {
        status.textContent = "Press Ctrl+C (⌘C) to copy the selected link.";
      }
    });
  }

  if (document.querySelector("time.countdown[data-ends-at]")) {
    tickCountdowns();
    setInterval(tickCountdowns, 1000);
  }
});
