// The clonefinder page: one form, one check, the matches as cards. No framework, no build.
"use strict";

(function () {
  const HEADERS = { "Content-Type": "application/json", "X-Clonefinder-Page": "1" };
  const FIELDS = ["platform", "handle", "display_name", "bio", "avatar", "webhook_url", "email"];
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

  // What a required field asks for, said beside it when it is left empty.
  const REQUIRED = {
    platform: "Please fill this in: the site your account is on, e.g. instagram.",
    handle: "Please fill this in: your handle, the name after the @, e.g. jane_doe.",
  };
  const LABEL_OF = { platform: "Platform", handle: "Handle", display_name: "Display name", bio: "Bio", avatar: "Profile photo", webhook_url: "Webhook URL", email: "E-mail" };
  const DROP_HINT = "Drag and drop your photo here, or choose a file.";
  const NOT_AN_IMAGE = "This file is not a usable image: it cannot be opened as a picture. " +
    "Choose a photo (JPEG, PNG, WEBP, GIF, BMP or TIFF), or remove this file.";

  let info = { profiles: null, max_image_bytes: 10 * 1024 * 1024, max_own_accounts: 10, mode: "local" };
  let chosen = null; // the chosen photo (File)
  let chosenProblem = null; // why the chosen file cannot be sent, in plain words
  let chosenRead = Promise.resolve(); // settles once the chosen file has been tried as an image
  let lastRecord = null; // what the shown result was checked with (own_accounts included)
  let sentOwnRows = []; // the rows of the accounts sent, in the order sent (errors name them so)

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
    for (const row of ownRows.children) {
      row.querySelector(".error").textContent = "";
      for (const input of row.querySelectorAll("input")) input.removeAttribute("aria-invalid");
    }
    $("own-error").textContent = "";
    $("form-error").textContent = "";
  }

  function rowError(row, input, message) {
    const box = row.querySelector(".error");
    box.textContent = box.textContent ? box.textContent + " " + message : message;
    input.setAttribute("aria-invalid", "true");
    return input;
  }

  // An error of the accounts sent (`own_accounts[1].handle`) goes to the row it names.
  function showOwnError(field, message) {
    const named = /^own_accounts(?:\[(\d+)\](?:\.(platform|handle))?)?$/.exec(field);
    if (!named) return undefined;
    const said = message.replace(/^field '[^']*': /, "");
    const row = named[1] === undefined ? null : sentOwnRows[Number(named[1])];
    if (row) return rowError(row, row.querySelector(named[2] === "handle" ? ".own-handle" : ".own-platform"), said);
    $("own-error").textContent = said;
    return $("own-add");
  }

  function showError(field, message) {
    const ownField = field ? showOwnError(field, message) : undefined;
    if (ownField !== undefined) return ownField;
    const name = FIELD_OF[field] || field;
    if (name === "webhook_url") $("advanced").open = true; // an error is never left folded away
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

  // Whether a file is a picture: "shown" (this browser decodes it), "kept" (a TIFF, which the
  // service reads but browsers do not show) or null (not an image, whatever its name says).
  async function pictureKind(file) {
    try {
      const bitmap = await createImageBitmap(file);
      bitmap.close();
      return "shown";
    } catch (_) {
      const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
      const tiff = [[0x49, 0x49, 0x2a, 0x00], [0x4d, 0x4d, 0x00, 0x2a]];
      return tiff.some((magic) => magic.every((byte, i) => head[i] === byte)) ? "kept" : null;
    }
  }

  function avatarError(message) {
    $("avatar-error").textContent = message || "";
    if (message) fileInput.setAttribute("aria-invalid", "true");
    else fileInput.removeAttribute("aria-invalid");
  }

  function choose(file) {
    chosen = file || null;
    chosenProblem = null;
    avatarError(null);
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.removeAttribute("src");
    preview.hidden = true;
    $("avatar-clear").hidden = !chosen;
    if (!chosen) {
      $("drop-hint").textContent = DROP_HINT;
      chosenRead = Promise.resolve();
      return;
    }
    const picked = chosen;
    $("drop-hint").textContent = "Chosen: " + picked.name;
    if (picked.size > info.max_image_bytes) {
      chosenProblem = "This photo is too large: at most " + Math.floor(info.max_image_bytes / 1048576) + " MB.";
      avatarError(chosenProblem);
      chosenRead = Promise.resolve();
      return;
    }
    chosenRead = pictureKind(picked).catch(() => null).then((kind) => {
      if (chosen !== picked) return; // another file was chosen meanwhile
      if (kind === "shown") {
        preview.src = URL.createObjectURL(picked);
        preview.hidden = false;
      } else if (kind === "kept") {
        $("drop-hint").textContent = "Chosen: " + picked.name + " (this browser cannot preview it)";
      } else {
        chosenProblem = NOT_AN_IMAGE;
        avatarError(chosenProblem);
      }
    });
  }

  $("avatar-clear").addEventListener("click", () => {
    fileInput.value = "";
    choose(null);
    fileInput.focus();
  });
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

  // -- the person's other accounts ------------------------------------------------------------

  const ownRows = $("own-rows");
  let ownRowsMade = 0; // gives each row's fields ids of their own

  function renumberOwnRows() {
    [...ownRows.children].forEach((row, i) => {
      for (const hidden of row.querySelectorAll(".sr")) hidden.textContent = " of your other account " + (i + 1);
    });
    const full = ownRows.children.length >= info.max_own_accounts;
    $("own-add").disabled = full;
    $("own-full").textContent = full ? "You named " + info.max_own_accounts + " accounts, the most a check takes." : "";
    $("own-full").hidden = !full;
  }

  // One row: platform and handle of an account of the person's, with a button to remove it.
  function addOwnRow(platform, handle) {
    ownRowsMade += 1;
    const id = "own-" + ownRowsMade;
    const field = (kind, words, attrs) => el("div", { className: "own-field" }, [
      el("label", { for: id + "-" + kind }, [words, el("span", { className: "sr" })]),
      el("input", Object.assign({ id: id + "-" + kind, className: "own-" + kind, "aria-describedby": id + "-error" }, attrs)),
    ]);
    const remove = el("button", { type: "button", className: "own-remove", text: "Remove" });
    const row = el("li", { className: "own-row" }, [
      field("platform", "Platform", { list: "platforms", autocomplete: "off", placeholder: "e.g. twitter" }),
      field("handle", "Handle", { autocomplete: "off", placeholder: "e.g. jane_doe" }),
      remove,
      el("p", { id: id + "-error", className: "error", "aria-live": "polite" }),
    ]);
    row.querySelector(".own-platform").value = platform || "";
    row.querySelector(".own-handle").value = handle || "";
    remove.addEventListener("click", () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumberOwnRows();
      (next ? next.querySelector("input") : $("own-add")).focus();
    });
    ownRows.append(row);
    renumberOwnRows();
    return row;
  }

  $("own-add").addEventListener("click", () => {
    if (ownRows.children.length < info.max_own_accounts) addOwnRow().querySelector("input").focus();
  });

  const folded = (platform, handle) => (platform.trim() + "/" + handle.trim().replace(/^@/, "")).toLowerCase();

  // The accounts named in full, with the rows they come from.
  function ownAccountsInForm() {
    const accounts = [];
    const rows = [];
    for (const row of ownRows.children) {
      const platform = row.querySelector(".own-platform").value.trim();
      const handle = row.querySelector(".own-handle").value.trim();
      if (platform && handle) {
        accounts.push({ platform, handle });
        rows.push(row);
      }
    }
    return { accounts, rows };
  }

  // "Yes, this is mine": the account joins the person's own, and the check is made again.
  function claim(profile) {
    const named = ownAccountsInForm().accounts.some((a) => folded(a.platform, a.handle) === folded(profile.platform, profile.handle));
    if (!named) {
      if (ownRows.children.length >= info.max_own_accounts) {
        $("own-error").textContent = "Remove one of your other accounts first: a check takes at most " + info.max_own_accounts + ".";
        $("own-add").focus();
        return;
      }
      addOwnRow(profile.platform, profile.handle);
    }
    form.requestSubmit();
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

  // The person's side of a card: the photo that was compared, or a plain word that none was.
  function yourPhoto(queryAvatar) {
    if (chosen && preview.src && !preview.hidden) {
      return { image: el("img", { src: preview.src, alt: "Your photo", width: "128", height: "128" }), caption: "You" };
    }
    if (chosen) return { image: el("div", { className: "noimg", text: "Your photo (no preview)" }), caption: "You" };
    if (queryAvatar) {
      const image = el("img", { src: queryAvatar, alt: "Your photo on file", width: "128", height: "128", className: "query-avatar" });
      image.addEventListener("error", () => image.replaceWith(el("div", { className: "noimg", text: "Photo on file not shown" })), { once: true });
      return { image, caption: "You (photo on file)" };
    }
    return { image: el("div", { className: "noimg", text: "No photo given" }), caption: "You" };
  }

  // "Name @handle on platform", linked to the account where its address is known.
  function accountName(item, profile, platform, handle) {
    const label = (profile.display_name ? profile.display_name + " " : "") + "@" + handle + " on " + platform;
    return item.link
      ? el("a", { href: item.link, rel: "noopener noreferrer nofollow", target: "_blank", text: label })
      : document.createTextNode(label);
  }

  // The person's photo beside the account's.
  function facesOf(match, queryAvatar) {
    const profile = match.profile;
    const yours = yourPhoto(queryAvatar);
    const theirs = match.avatar
      ? el("img", { src: match.avatar, alt: "Photo of @" + profile.handle, width: "128", height: "128", className: "match-avatar" })
      : el("div", { className: "noimg", text: "No photo" });
    return el("div", { className: "faces" }, [
      el("figure", {}, [yours.image, el("figcaption", { text: yours.caption })]),
      el("figure", {}, [theirs, el("figcaption", { text: "@" + profile.handle })]),
    ]);
  }

  function card(match, rank, queryAvatar) {
    const profile = match.profile;
    const title = el("h3", { id: "match-" + rank + "-title", tabindex: "-1" },
      [accountName(match, profile, profile.platform, profile.handle)]);
    const faces = facesOf(match, queryAvatar);
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

  // An account that may be the person's own (`may_be_yours`): asked about, never called a copy
  // until they say it is not theirs.
  function question(match, rank, queryAvatar) {
    const profile = match.profile;
    const title = el("h3", { id: "match-" + rank + "-title" },
      ["Is this you? ", accountName(match, profile, profile.platform, profile.handle)]);
    const yes = el("button", { type: "button", className: "yes", text: "Yes, this is mine" });
    const no = el("button", { type: "button", className: "no", text: "No, it is not me" });
    const item = el("li", { className: "card question", "aria-labelledby": title.id }, [
      title, facesOf(match, queryAvatar),
      el("p", { className: "question-why", text: "This account looks exactly like you on another platform: " +
        "the same photo and the same name, and it looks like the original (older, verified or more followed " +
        "than the account you checked). If it is another of your accounts, it is not a copy." }),
      el("p", { className: "question-ask", text: "If it is not yours, it copies you: answer No to see it as a copy." }),
      el("div", { className: "answers" }, [yes, no]),
    ]);
    yes.addEventListener("click", () => claim(profile));
    no.addEventListener("click", () => {
      const shown = card(match, rank, queryAvatar);
      item.replaceWith(shown);
      shown.querySelector("h3").focus();
    });
    return item;
  }

  // The accounts the person named as theirs, apart from the matches.
  function ownItem(account) {
    const profile = account.profile || {};
    const photo = account.avatar
      ? el("img", { src: account.avatar, alt: "Photo of @" + account.handle, width: "64", height: "64" })
      : el("div", { className: "noimg", text: "No photo" });
    let state = "Kept out of the results.";
    if (account.found === true) state = "Not counted as a copy; an account that copies it is looked for too.";
    if (account.found === false) state = "Not counted as a copy. clonefinder holds no profile of it.";
    return el("li", { className: "own-card" }, [
      photo,
      el("div", {}, [
        el("p", { className: "own-name" }, [accountName(account, profile, account.platform, account.handle)]),
        el("p", { className: "hint", text: state }),
      ]),
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
    const asked = matches.filter((match) => match.may_be_yours).length;
    const copies = matches.length - asked;
    const askLine = asked === 1 ? "1 account may be another of yours: please say whether it is."
      : asked + " accounts may be other accounts of yours: please say whether they are.";
    if (!matches.length) {
      status.textContent = "No account copies you: " + searched + " profiles were searched.";
      status.className = "empty";
    } else if (!copies) {
      status.className = "";
      status.textContent = askLine + " (" + searched + " profiles searched.)";
    } else {
      status.className = "";
      status.textContent = copies + (copies === 1 ? " account looks" : " accounts look") +
        " like yours (" + searched + " profiles searched), most alike first." + (asked ? " " + askLine : "");
    }
    matches.forEach((match, i) => matchList.append(
      match.may_be_yours ? question(match, i + 1, result.query_avatar) : card(match, i + 1, result.query_avatar)));
    const own = result.own_accounts || [];
    $("own-list").replaceChildren(...own.map(ownItem));
    $("own-results").hidden = !own.length;
    actions.hidden = false;
    $("advanced").hidden = false;
  }

  // The results take the focus, so a screen reader reads them next; on a phone, where they lie
  // below the form, they are scrolled to from their heading, so the verdict is on screen.
  function showResults() {
    results.focus({ preventScroll: true });
    const top = results.getBoundingClientRect().top;
    if (top < 0 || top > window.innerHeight / 3) results.scrollIntoView({ block: "start" });
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

  // Flags every field that keeps the form from being sent, all at once; returns their ids.
  function invalidFields() {
    const flagged = [];
    const labels = Object.assign({}, LABEL_OF);
    for (const [name, message] of Object.entries(REQUIRED)) {
      if (!$(name).value.trim()) {
        showError(name, message);
        flagged.push(name);
      }
    }
    if (chosenProblem) {
      avatarError(chosenProblem);
      flagged.push("avatar");
    }
    [...ownRows.children].forEach((row, i) => {
      const platform = row.querySelector(".own-platform");
      const handle = row.querySelector(".own-handle");
      if (Boolean(platform.value.trim()) !== Boolean(handle.value.trim())) {
        const empty = platform.value.trim() ? handle : platform;
        rowError(row, empty, "Please fill in both the platform and the handle of this account, or remove it.");
        flagged.push(empty.id);
        labels[empty.id] = "Your other account " + (i + 1);
      }
    });
    const notes = [];
    if (flagged.length > 1) {
      notes.push("Please correct these " + flagged.length + " fields: " +
        flagged.map((name) => labels[name]).join(", ") + ".");
    }
    if (info.mode === "public" && !chosen && !$("display_name").value.trim() && !$("bio").value.trim()) {
      notes.push("Add your display name, your bio or your photo: a check compares what you send.");
      flagged.push("display_name");
    }
    if (notes.length) showError(null, notes.join(" "));
    return flagged;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    actionsStatus.textContent = "";
    await chosenRead;
    const invalid = invalidFields();
    if (invalid.length) { $(invalid[0]).focus(); return; }
    const button = $("submit");
    button.disabled = true;
    results.setAttribute("aria-busy", "true");
    matchList.replaceChildren();
    $("own-results").hidden = true;
    actions.hidden = true;
    $("advanced").hidden = true;
    status.className = "busy";
    status.textContent = info.profiles !== null
      ? "Checking… comparing you with " + info.profiles.toLocaleString("en") + " profiles."
      : "Checking…";
    try {
      const record = await recordFromForm();
      const own = ownAccountsInForm();
      if (own.accounts.length) record.own_accounts = own.accounts;
      sentOwnRows = own.rows;
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
      showResults();
    } catch (error) {
      status.className = "";
      status.textContent = "";
      showError(null, "The check could not be sent: " + error);
    } finally {
      button.disabled = false;
      results.removeAttribute("aria-busy");
    }
  });

  // Runs one action of a result with its button disabled and marked working until it is done,
  // so a second click cannot send it twice; a failure to send is said, never left spinning.
  async function working(button, message, action) {
    if (!lastRecord || button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    actionsStatus.className = "busy";
    actionsStatus.textContent = message;
    try {
      await action();
    } catch (error) {
      actionsStatus.textContent = "The request could not be sent: " + error;
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      actionsStatus.className = "";
    }
  }

  $("watch").addEventListener("click", () => working($("watch"), "Registering you to be watched…", async () => {
    clearErrors();
    const webhook = $("webhook_url").value.trim();
    const email = $("email").value.trim();
    const { response, data } = await post("/web/api/watch", Object.assign({}, lastRecord,
      webhook ? { webhook_url: webhook } : {}, email ? { email } : {}));
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
    if (data.existing) {
      text = "You are already watched for this identity (entry " + data.id + "): nothing was added. " +
        "Your private watch page is the link shown when you first asked.";
    }
    const kept = new Set((data.own_accounts || []).map((a) => folded(a.platform, a.handle)));
    const named = (accounts) => accounts.map((a) => "@" + a.handle.replace(/^@/, "") + " on " + a.platform).join(", ");
    if (kept.size && !data.existing) text += " Your accounts (" + named(data.own_accounts) + ") go with the watch: they never alert it.";
    const notKept = (lastRecord.own_accounts || []).filter((a) => !kept.has(folded(a.platform, a.handle)));
    if (data.existing && notKept.length) {
      text += " The accounts you named after you first asked (" + named(notKept) + ") are not part of that watch: " +
        "if one ever alerts, answer \"This is me\" on your private watch page.";
    }
    if (data.email && !data.existing) text += " We e-mailed " + data.email + " a link to confirm the address; alerts are e-mailed once it is confirmed.";
    if (data.webhook_secret) text += " Webhook signing secret (shown once): " + data.webhook_secret;
    actionsStatus.textContent = text;
    if (data.watch_url) {
      // Shown once: only its hash is kept, so nobody can show it again.
      const url = location.origin + data.watch_url;
      $("watch-link").replaceChildren("Your private watch page, to see and answer your alerts or stop watching " +
        "(keep it to yourself; it is shown only now): ", el("a", { href: url, id: "private-link", text: url }));
      $("watch-link").hidden = false;
    }
  }));

  $("evidence").addEventListener("click", () => working($("evidence"), "Preparing the evidence report…", async () => {
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
  }));

  // -- what the page shows before a check ----------------------------------------------------

  fetch("/web/api/info", { headers: HEADERS })
    .then((response) => response.json().then((data) => ({ response, data })))
    .then(({ response, data }) => {
      if (!response.ok) { showError(null, (data.error && data.error.message) || "The service did not answer."); return; }
      info = data;
      $("email-field").hidden = !data.email;
      if (data.mode === "public") {
        const note = $("mode-note");
        note.textContent = "Your photo and details are used for this check only and are not kept, unless you ask to be watched.";
        note.hidden = false;
      }
    })
    .catch(() => { /* the check itself will say what is wrong */ });
})();
