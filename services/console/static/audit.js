// ocsea console, auditor's page: checks the case's trail in this browser, trusting neither the
// console nor the audit service. Each entry's exact leaf text is hashed (RFC 9162:
// SHA-256(0x00 || leaf)), its inclusion proof is folded up to a root (SHA-256(0x01 || l || r)),
// and that root must be the checkpoint's; the checkpoint's Ed25519 signature is checked with
// WebCrypto against the public key the auditor pinned (kept in this browser only).
"use strict";

(function () {
  const PIN_STORAGE = "ocsea.audit.pinned-key";
  const NOTE_FORMAT = "ocsea-audit-checkpoint/v1";
  // DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it.
  const SPKI_PREFIX = "302a300506032b6570032100";
  const digits = document.documentElement.dataset.digits || "0123456789";
  const strings = JSON.parse(document.getElementById("console-strings").textContent);
  const bundleElement = document.getElementById("bundle");
  const bundle = bundleElement ? JSON.parse(bundleElement.textContent) : null;

  function localise(text) {
    return String(text).replace(/[0-9]/g, (d) => digits[Number(d)]);
  }

  // Numbers in the page's digits; a key id stays as written, to compare it character by
  // character with the one published out of band.
  const VERBATIM = new Set(["key_id"]);

  function message(key, params) {
    const template = strings[key] || key;
    return template.replace(/\{([a-z_]+)\}/g, (_, name) =>
      VERBATIM.has(name) ? String(params[name]) : localise(params[name]));
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function fromHex(text) {
    if (!/^([0-9a-f]{2})*$/.test(text)) throw new Error("not hex");
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
    return out;
  }

  function fromBase64(text) {
    const clean = text.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) throw new Error("not base64");
    const binary = atob(clean);
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  function equal(a, b) {
    return a.length === b.length && a.every((v, i) => v === b[i]);
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const leafHash = (text) => sha256(concat(Uint8Array.of(0), new TextEncoder().encode(text)));
  const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

  // RFC 9162 section 2.1.3.2, step by step (arithmetic, not 32-bit shifts).
  async function rootFromProof(hash, index, size, proof) {
    if (index >= size) throw new Error("index beyond the tree");
    let fn = index;
    let sn = size - 1;
    let r = hash;
    for (const p of proof) {
      if (sn === 0) throw new Error("proof too long");
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error("proof too short");
    return r;
  }

  // A pasted key: raw Ed25519 key in base64, or the PEM public key file the service writes.
  function parseKey(text) {
    const trimmed = text.trim();
    let bytes;
    if (trimmed.includes("BEGIN PUBLIC KEY")) {
      const body = trimmed.replace(/-----[A-Z ]+-----/g, "");
      const der = fromBase64(body);
      if (der.length !== 44 || hex(der.slice(0, 12)) !== SPKI_PREFIX) throw new Error("not Ed25519");
      bytes = der.slice(12);
    } else {
      bytes = fromBase64(trimmed);
    }
    if (bytes.length !== 32) throw new Error("not 32 bytes");
    return bytes;
  }

  function pinned() {
    try {
      const stored = window.localStorage.getItem(PIN_STORAGE);
      return stored ? fromBase64(stored) : null;
    } catch (error) {
      return null;
    }
  }

  function setText(id, key, params, state) {
    const el = document.getElementById(id);
    if (!el) return;
    el.textContent = message(key, params || {});
    if (state) el.dataset.state = state;
  }

  async function showPin() {
    const key = pinned();
    if (!key) {
      setText("pin-state", "js.pin.none");
      return;
    }
    if (!window.crypto || !crypto.subtle) {
      setText("pin-state", "js.pin.set", { key_id: "?" });
      return;
    }
    const id = hex(await sha256(key));
    setText("pin-state", "js.pin.set", { key_id: id.slice(0, 16) });
  }

  function wirePinning() {
    const save = document.getElementById("pin-save");
    const forget = document.getElementById("pin-forget");
    const input = document.getElementById("pin-input");
    if (!save || !forget || !input) return;
    save.addEventListener("click", async () => {
      let key;
      try {
        key = parseKey(input.value);
      } catch (error) {
        setText("pin-state", "js.pin.invalid");
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      input.removeAttribute("aria-invalid");
      window.localStorage.setItem(PIN_STORAGE, btoa(String.fromCharCode(...key)));
      input.value = "";
      await showPin();
      if (bundle) await verify();
    });
    forget.addEventListener("click", async () => {
      window.localStorage.removeItem(PIN_STORAGE);
      await showPin();
      if (bundle) await verify();
    });
  }

  // "verified", "failed", "unpinned", "unsupported" (no Ed25519 in this browser).
  async function checkSignature(checkpoint) {
    const key = pinned();
    const claimed = fromBase64(checkpoint.public_key);
    if (hex(await sha256(claimed)) !== checkpoint.key_id) return ["failed", "js.signature.key_id"];
    if (!key) return ["unpinned", "js.signature.unpinned"];
    if (!equal(key, claimed)) return ["failed", "js.signature.other_key"];
    let cryptoKey;
    try {
      cryptoKey = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    } catch (error) {
      return ["unsupported", "js.signature.unsupported"];
    }
    const note = new TextEncoder().encode(
      [NOTE_FORMAT, checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash,
        checkpoint.timestamp].join("\n") + "\n");
    let ok;
    try {
      ok = await crypto.subtle.verify({ name: "Ed25519" }, cryptoKey, fromBase64(checkpoint.signature), note);
    } catch (error) {
      return ["unsupported", "js.signature.unsupported"];
    }
    return ok ? ["verified", "js.signature.verified"] : ["failed", "js.signature.bad"];
  }

  async function checkEntries(checkpoint) {
    const root = fromHex(checkpoint.root_hash);
    const failed = [];
    for (const entry of bundle.entries) {
      const cell = document.querySelector(`tr[data-leaf-index="${entry.leaf_index}"] td.proof`);
      let ok = false;
      try {
        const proof = entry.inclusion_proof.map(fromHex);
        const computed = await rootFromProof(
          await leafHash(entry.leaf), entry.leaf_index, checkpoint.tree_size, proof);
        ok = equal(computed, root);
      } catch (error) {
        ok = false;
      }
      if (!ok) failed.push(entry.leaf_index);
      if (cell) {
        cell.dataset.state = ok ? "verified" : "failed";
        cell.textContent = message(ok ? "js.proof.verified" : "js.proof.failed", {});
      }
    }
    return failed;
  }

  async function verify() {
    if (!window.crypto || !crypto.subtle) {
      setText("verdict", "js.verify.no_webcrypto", {}, "unverified");
      setText("signature-status", "js.signature.no_webcrypto", {}, "unsupported");
      return;
    }
    const checkpoint = bundle.checkpoint;
    const failed = await checkEntries(checkpoint);
    const [state, key] = await checkSignature(checkpoint);
    setText("signature-status", key, {}, state);
    const uncovered = document.querySelectorAll('td.proof[data-state="uncovered"]').length;
    if (failed.length) {
      setText("verdict", "js.verify.failed", { count: failed.length, first: failed[0] }, "failed");
    } else if (state === "failed") {
      setText("verdict", "js.verify.bad_signature", {}, "failed");
    } else if (state !== "verified") {
      setText("verdict", state === "unsupported" ? "js.verify.unsupported" : "js.verify.unpinned",
        { count: bundle.entries.length }, "unverified");
    } else if (uncovered) {
      setText("verdict", "js.verify.partly", { count: bundle.entries.length, uncovered }, "unverified");
    } else {
      setText("verdict", "js.verify.verified", { count: bundle.entries.length }, "verified");
    }
  }

  wirePinning();
  showPin();
  if (bundle) verify();
})();
