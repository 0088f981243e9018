// The clonefinder page: one form, one check, the matches as cards. No framework, no build.
"use strict";

(function () {
  const HEADERS = { "Content-Type": "application/json", "X-Clonefinder-Page": "1" };
  const FIELDS = ["platform", "handle", "display_name", "bio", "avatar", "webhook_url"];
  // API field names that the form shows under another name.
  const FIELD_OF = { avatar_base64: "avatar", avatar_url: "avatar", avatar_path: "avatar" };
  // What a label means, if the service did not say it in words (`label_words`).
  const LABELS = { likely_clone: "very likely a copy", possible_clone: "possibly a copy", unlikely: "probably not a copy" };
  const SIGNALS = { avatar: "Photo", display_name: "Display name", handle: "Handle", bio: "Bio" };

  const $ = (id) => document.getElementById(id);
  const form = $("check-form");
  const fileInput = $("avatar");
  const drop = $("drop");
  const preview = $("preview");
  const status = $("status");
  const results = $("results");
  const matchList = $("matches");
  const actions = $("actions");
  const actionsStatus = $("actions-status");

  let info = { profiles: null, max_image_bytes: 10 * 1024 * 1024, mode: "local" };
  let chosen = null; // the chosen photo (File)
  let lastRecord = null; // what the shown result was checked with

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  // -- errors next to their fields -------------------------------------------------------------

  function clearErrors() {
    for (const name of FIELDS) {
      $(name + "-error").textContent = "";
      $(name).removeAttribute("aria-invalid");
    }
    $("form-error").textContent = "";
  }

  function showError(field, message) {
    const name = FIELD_OF[field] || field;
    if (name && FIELDS.includes(name)) {
      const box = $(name + "-error");
      box.textContent = box.textContent ? box.textContent + " " + message : message;
      $(name).setAttribute("aria-invalid", "true");
      return $(name);
    }
    $("form-error").textContent = message;
    return null;
  }

  function humanMessage(field, message) {
    if ((FIELD_OF[field] || field) === "avatar") {
      if (/too large|larger than|limit/i.test(message)) return "This photo is too large. " + message;
      if (/image|format|decod|corrupt|bomb|pixels/i.test(message)) return "This file is not a usable image: " + message;
    }
    if (message === "required") return "Please fill this in.";
    return message;
  }

  // Shows an API error ({"error": {"code", "message", "details"}}) beside its fields.
  function showApiError(status, body, hasPhoto) {
    const error = (body && body.error) || { message: "The check failed (HTTP " + status + ")." };
    const details = Array.isArray(error.details) ? error.details : [];
    let first = null;
    let placed = false;
    for (const detail of details) {
      if (detail && detail.field) {
        const target = showError(detail.field, humanMessage(detail.field, detail.message || error.message));
        first = first || target;
        placed = placed || target !== null;
      }
    }
    if (!placed) {
      if (status === 413 && hasPhoto) first = showError("avatar", "This photo is too large. " + error.message);
      else if (status === 429) showError(null, error.message);
      else showError(null, error.message);
    }
    if (first) first.focus();
  }

  // -- the photo: picker, drag and drop, preview ----------------------------------------------

  function choose(file) {
    chosen = file || null;
    if (preview.src) URL.revokeObjectURL(preview.src);
    if (chosen && /^image\//.test(chosen.type)) {
      preview.src = URL.createObjectURL(chosen);
      preview.hidden = false;
      $("drop-hint").textContent = "Chosen: " + chosen.name;
    } else {
      preview.removeAttribute("src");
      preview.hidden = true;
      $("drop-hint").textContent = chosen ? "Chosen: " + chosen.name : "Drag and drop your photo here, or choose a file.";
    }
  }

  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  for (const kind of ["dragenter", "dragover"]) {
    drop.addEventListener(kind, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const kind of ["dragleave", "drop"]) {
    drop.addEventListener(kind, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      try { fileInput.files = files; } catch (_) { /* older browsers: the picker stays empty */ }
      choose(files[0]);
    }
  });

  function base64Of(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  // -- results ------------------------------------------------------------------------------

  function percent(value) {
    return value === null || value === undefined ? "not compared" : Math.round(value * 100) + "%";
  }

  // Cut, not rounded: a score of 0.999 is not a certainty, and "1.00" would say it is.
  function scoreShown(score) {
    return (Math.floor(score * 100) / 100).toFixed(2);
  }

  function copySentence(side, handle) {
    if (side === "candidate") return "@" + handle + " is likely the copy (newer, less followed or unverified).";
    if (side === "query") return "Your account looks like the copy by creation date, followers or badge.";
    return "Which side is the copy cannot be told from the dates, followers and badges.";
  }

  function card(match, rank) {
    const profile = match.profile;
    const name = profile.display_name ? profile.display_name + " " : "";
    const title = el("h3", { id: "match-" + rank + "-title" });
    const label = name + "@" + profile.handle + " on " + profile.platform;
    if (match.link) {
      title.append(el("a", { href: match.link, rel: "noopener noreferrer nofollow", target: "_blank", text: label }));
    } else {
      title.textContent = label;
    }
    const yours = preview.src && !preview.hidden
      ? el("img", { src: preview.src, alt: "Your photo", width: "128", height: "128" })
      : el("div", { className: "noimg", text: "No photo given" });
    const theirs = match.avatar
      ? el("img", { src: match.avatar, alt: "Photo of @" + profile.handle, width: "128", height: "128", className: "match-avatar" })
      : el("div", { className: "noimg", text: "No photo" });
    const faces = el("div", { className: "faces" }, [
      el("figure", {}, [yours, el("figcaption", { text: "You" })]),
      el("figure", {}, [theirs, el("figcaption", { text: "@" + profile.handle })]),
    ]);
    // The score in one line: what it measures, a word for it, then the number.
    const score = el("p", { className: "score" }, [
      el("span", { className: "score-meaning", text: "How sure clonefinder is that this account copies you: " }),
      el("span", { className: "label " + match.label, text: match.label_words || LABELS[match.label] || match.label }),
      " ",
      el("span", { className: "score-number" }, [
        "(", el("strong", { className: "score-value", text: scoreShown(match.score) }), " of 1)",
      ]),
    ]);
    const explanations = match.explanations ||
      (match.reasons || []).map((reason) => ({ text: reason, detail: reason }));
    const reasons = el("ul", { className: "reasons" },
      explanations.map((explanation) => el("li", { text: explanation.text })));
    const signals = el("dl", { className: "signals" });
    for (const [key, value] of Object.entries(match.signals || {})) {
      signals.append(el("dt", { text: SIGNALS[key] || key }), el("dd", { text: percent(value) }));
    }
    const technical = el("details", { className: "technical" }, [
      el("summary", { text: "Technical detail" }),
      el("p", { className: "hint", text: "The reasons as clonefinder states them, for the platform or a lawyer:" }),
      el("ul", { className: "reason-details" },
        explanations.map((explanation) => el("li", { text: explanation.detail }))),
      el("h4", { text: "Similarity of each field" }), signals,
    ]);
    return el("li", { className: "card", "aria-labelledby": title.id }, [
      title, faces, score,
      el("p", { className: "copy", text: copySentence(match.likely_impersonator, profile.handle) }),
      el("h4", { text: "Why it looks like a copy" }), reasons,
      technical,
      el("h4", { text: "What to do next" }), nextStep(match),
    ]);
  }

  // Where to report the account: the platform's impersonation form where the service knows it.
  function nextStep(match) {
    const profile = match.profile;
    const step = el("p", { className: "next" },
      ["Report @" + profile.handle + " to " + profile.platform + " as an account that pretends to be you"]);
    if (match.report_form) {
      step.append(" through its ", el("a", {
        href: match.report_form, rel: "noopener noreferrer", target: "_blank", text: "impersonation form",
      }), ".");
    } else {
      step.append(": open the account, choose Report, then the option for impersonation.");
    }
    step.append(" Attach the evidence PDF (Download evidence, above) to show what it copies.");
    return step;
  }

  function render(result) {
    matchList.replaceChildren();
    const matches = (result.matches || []).slice().sort((a, b) => b.score - a.score);
    const searched = result.searched.toLocaleString("en");
    if (!matches.length) {
      status.textContent = "No account copies you: " + searched + " profiles were searched.";
      status.className = "empty";
    } else {
      status.className = "";
      status.textContent = matches.length + (matches.length === 1 ? " account looks" : " accounts look") +
        " like yours (" + searched + " profiles searched), most alike first.";
      matches.forEach((match, i) => matchList.append(card(match, i + 1)));
    }
    actions.hidden = false;
  }

  // -- requests -----------------------------------------------------------------------------

  async function post(path, body) {
    const response = await fetch(path, { method: "POST", headers: HEADERS, body: JSON.stringify(body) });
    let data = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("application/json")) data = await response.json();
    return { response, data };
  }

  async function recordFromForm() {
    const record = {};
    for (const name of ["platform", "handle", "display_name", "bio"]) {
      const value = $(name).value.trim();
      if (value) record[name] = value;
    }
    if (chosen) record.avatar_base64 = await base64Of(chosen);
    return record;
  }

  function missingFields() {
    let first = null;
    for (const name of ["platform", "handle"]) {
      if (!$(name).value.trim()) first = first || showError(name, "Please fill this in.");
    }
    if (chosen && chosen.size > info.max_image_bytes) {
      first = first || showError("avatar", "This photo is too large: at most " +
        Math.floor(info.max_image_bytes / 1048576) + " MB.");
    }
    return first;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    actionsStatus.textContent = "";
    const invalid = missingFields();
    if (invalid) { invalid.focus(); return; }
    const button = $("submit");
    button.disabled = true;
    results.setAttribute("aria-busy", "true");
    matchList.replaceChildren();
    actions.hidden = true;
    status.className = "busy";
    status.textContent = info.profiles !== null
      ? "Checking… comparing you with " + info.profiles.toLocaleString("en") + " profiles."
      : "Checking…";
    try {
      const record = await recordFromForm();
      const { response, data } = await post("/web/api/check", record);
      if (!response.ok) {
        status.className = "";
        status.textContent = "";
        showApiError(response.status, data, Boolean(chosen));
        return;
      }
      lastRecord = record;
      info.profiles = data.searched;
      render(data);
      results.focus();
    } catch (error) {
      status.className = "";
      status.textContent = "";
      showError(null, "The check could not be sent: " + error);
    } finally {
      button.disabled = false;
      results.removeAttribute("aria-busy");
    }
  });

  $("watch").addEventListener("click", async () => {
    if (!lastRecord) return;
    clearErrors();
    actionsStatus.textContent = "Registering…";
    const webhook = $("webhook_url").value.trim();
    const { response, data } = await post("/web/api/watch", Object.assign({}, lastRecord, webhook ? { webhook_url: webhook } : {}));
    if (!response.ok) {
      actionsStatus.textContent = "";
      showApiError(response.status, data, Boolean(chosen));
      if (!data || !data.error || !(data.error.details || []).some((d) => d && d.field)) {
        actionsStatus.textContent = (data && data.error && data.error.message) || "Watching failed.";
      }
      return;
    }
    let text = "You are watched (entry " + data.id + "): every new account that copies you above score " +
      data.threshold.toFixed(2) + " becomes an alert.";
    if (data.webhook_secret) text += " Webhook signing secret (shown once): " + data.webhook_secret;
    actionsStatus.textContent = text;
  });

  $("evidence").addEventListener("click", async () => {
    if (!lastRecord) return;
    actionsStatus.textContent = "Preparing the evidence report…";
    const response = await fetch("/web/api/evidence", { method: "POST", headers: HEADERS, body: JSON.stringify(lastRecord) });
    if (!response.ok) {
      const data = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
      actionsStatus.textContent = (data && data.error && data.error.message) || "The evidence report failed.";
      return;
    }
    const disposition = response.headers.get("content-disposition") || "";
    const match = /filename="([^"]+)"/.exec(disposition);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: match ? match[1] : "clonefinder-evidence.pdf" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    actionsStatus.textContent = "Evidence report downloaded.";
  });

  // -- what the page shows before a check ----------------------------------------------------

  fetch("/web/api/info", { headers: HEADERS })
    .then((response) => response.json().then((data) => ({ response, data })))
    .then(({ response, data }) => {
      if (!response.ok) { showError(null, (data.error && data.error.message) || "The service did not answer."); return; }
      info = data;
      if (data.mode === "public") {
        const note = $("mode-note");
        note.textContent = "Your photo and details are used for this check only and are not kept, unless you ask to be watched.";
        note.hidden = false;
      }
    })
    .catch(() => { /* the check itself will say what is wrong */ });
})();
