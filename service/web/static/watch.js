// The private watch page (/watch#TOKEN) and the e-mails' links (/watch/confirm/TOKEN,
// /watch/stop/TOKEN). The private token stays in the fragment: it is sent in request bodies
// only, never in an address a server would log.
"use strict";

(function () {
  const HEADERS = { "Content-Type": "application/json", "X-Clonefinder-Page": "1" };
  const SIGNALS = { avatar: "Photo", display_name: "Display name", handle: "Handle", bio: "Bio" };
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const matchList = $("matches");
  const actionsStatus = $("actions-status");
  let token = null; // the private link's, replaced when the person asks for a new link

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

  async function post(path, body) {
    const response = await fetch(path, { method: "POST", headers: HEADERS, body: JSON.stringify(body || {}) });
    const type = response.headers.get("content-type") || "";
    const data = type.includes("application/json") ? await response.json() : null;
    return { response, data };
  }

  function errorOf(data, fallback) {
    return (data && data.error && data.error.message) || fallback;
  }

  // -- the cards: as a check shows its matches ------------------------------------------------

  function percent(value) {
    return value === null || value === undefined ? "not compared" : Math.round(value * 100) + "%";
  }

  function scoreShown(score) {
    return (Math.floor(score * 100) / 100).toFixed(2);
  }

  function copySentence(side, handle) {
    if (side === "candidate") return "@" + handle + " is likely the copy (newer, less followed or unverified).";
    if (side === "query") return "Your account looks like the copy by creation date, followers or badge.";
    return "Which side is the copy cannot be told from the dates, followers and badges.";
  }

  function answerWords(answer) {
    if (answer === "mine") return "You said this account is yours: it will not alert you again.";
    if (answer === "clone") return "You said this account is not you: a clone. Report it (below).";
    return "Is this account yours?";
  }

  function card(alert, rank, yourAvatar) {
    const profile = alert.profile;
    const name = profile.display_name ? profile.display_name + " " : "";
    const title = el("h3", { id: "alert-" + rank + "-title" });
    const label = name + "@" + profile.handle + " on " + profile.platform;
    if (alert.link) {
      title.append(el("a", { href: alert.link, rel: "noopener noreferrer nofollow", target: "_blank", text: label }));
    } else {
      title.textContent = label;
    }
    const yours = yourAvatar
      ? el("img", { src: yourAvatar, alt: "Your photo", width: "128", height: "128" })
      : el("div", { className: "noimg", text: "Your photo is not kept" });
    const theirs = alert.avatar
      ? el("img", { src: alert.avatar, alt: "Photo of @" + profile.handle, width: "128", height: "128", className: "match-avatar" })
      : el("div", { className: "noimg", text: "No photo" });
    const faces = el("div", { className: "faces" }, [
      el("figure", {}, [yours, el("figcaption", { text: "You" })]),
      el("figure", {}, [theirs, el("figcaption", { text: "@" + profile.handle })]),
    ]);
    const score = el("p", { className: "score" }, [
      el("span", { className: "score-meaning", text: "How sure clonefinder is that this account copies you: " }),
      el("span", { className: "label " + alert.label, text: alert.label_words }),
      " ",
      el("span", { className: "score-number" }, [
        "(", el("strong", { className: "score-value", text: scoreShown(alert.score) }), " of 1)",
      ]),
    ]);
    const explanations = alert.explanations || [];
    const signals = el("dl", { className: "signals" });
    for (const [key, value] of Object.entries(alert.signals || {})) {
      signals.append(el("dt", { text: SIGNALS[key] || key }), el("dd", { text: percent(value) }));
    }
    const technical = el("details", { className: "technical" }, [
      el("summary", { text: "Technical detail" }),
      el("ul", { className: "reason-details" }, explanations.map((e) => el("li", { text: e.detail }))),
      el("h4", { text: "Similarity of each field" }), signals,
    ]);
    const next = el("p", { className: "next" },
      ["Report @" + profile.handle + " to " + profile.platform + " as an account that pretends to be you"]);
    if (alert.report_form) {
      next.append(" through its ", el("a", { href: alert.report_form, rel: "noopener noreferrer", target: "_blank", text: "impersonation form" }), ".");
    } else {
      next.append(": open the account, choose Report, then the option for impersonation.");
    }
    const said = el("p", { className: "answer-state", text: answerWords(alert.answer) });
    const mine = el("button", { type: "button", text: "This is me" });
    const clone = el("button", { type: "button", text: "Not me: a clone" });
    const item = el("li", { className: "card", "aria-labelledby": title.id }, [
      title, faces, score,
      el("p", { className: "copy", text: copySentence(alert.likely_impersonator, profile.handle) }),
      el("h4", { text: "Why it looks like a copy" }),
      el("ul", { className: "reasons" }, explanations.map((e) => el("li", { text: e.text }))),
      technical,
      el("h4", { text: "What to do next" }), next,
      el("div", { className: "answer" }, [said, mine, clone]),
    ]);
    for (const [button, answer] of [[mine, "mine"], [clone, "clone"]]) {
      button.addEventListener("click", async () => {
        mine.disabled = clone.disabled = true;
        try {
          const { response, data } = await post("/web/api/watching/answer", { token, alert_id: alert.id, answer });
          said.textContent = response.ok ? answerWords(data.answer) : errorOf(data, "Your answer was not saved.");
        } catch (error) {
          said.textContent = "Your answer could not be sent: " + error;
        } finally {
          mine.disabled = clone.disabled = false;
        }
      });
    }
    return item;
  }

  // -- the private page ---------------------------------------------------------------------

  function gone(message) {
    $("summary").hidden = true;
    $("alerts-title").hidden = true;
    matchList.replaceChildren();
    status.className = "empty";
    status.textContent = message;
  }

  function render(view) {
    const who = view.identity;
    const account = who.handle ? "@" + who.handle + (who.platform ? " on " + who.platform : "") : "";
    $("who").textContent = "Watching " + [who.display_name, account].filter(Boolean).join(" ") +
      " since " + new Date(view.created_at).toLocaleDateString("en") + ".";
    $("email-state").textContent = !view.email
      ? "New clones are shown here; no e-mail address was given."
      : view.email_confirmed
        ? "New clones are also e-mailed to " + view.email + "."
        : "New clones will be e-mailed to " + view.email + " once you follow the link in the e-mail we sent it.";
    $("summary").hidden = false;
    $("alerts-title").hidden = false;
    matchList.replaceChildren();
    const alerts = view.alerts || [];
    status.className = alerts.length ? "" : "empty";
    status.textContent = alerts.length
      ? alerts.length + (alerts.length === 1 ? " account looks" : " accounts look") + " like a copy of you, newest first."
      : "No account has copied you since you asked to be watched.";
    alerts.forEach((alert, i) => matchList.append(card(alert, i + 1, view.your_avatar)));
  }

  async function openPrivatePage() {
    status.className = "busy";
    status.textContent = "Opening your watch…";
    const { response, data } = await post("/web/api/watching", { token });
    if (!response.ok) { gone(errorOf(data, "This watch could not be opened.")); return; }
    render(data);

    $("new-link").addEventListener("click", async () => {
      const { response: answered, data: link } = await post("/web/api/watching/new-link", { token });
      if (!answered.ok) { actionsStatus.textContent = errorOf(link, "No new link was made."); return; }
      const url = location.origin + link.watch_url;
      history.replaceState(null, "", link.watch_url);
      actionsStatus.replaceChildren(
        "Your new private link (the old one no longer works; keep this one): ",
        el("a", { href: url, className: "private-link", text: url }));
      token = link.watch_url.slice(link.watch_url.indexOf("#") + 1);
    });
    $("stop").addEventListener("click", async () => {
      const { response: answered, data: stopped } = await post("/web/api/watching/stop", { token });
      if (!answered.ok) { actionsStatus.textContent = errorOf(stopped, "The watch was not stopped."); return; }
      history.replaceState(null, "", "/watch");
      gone("You are no longer watched: this watch, its photo's fingerprints and its alerts are erased.");
    });
  }

  // -- the e-mails' links: nothing happens until the person presses the button --------------

  function mailLink(kind) {
    $("intro").hidden = true;
    $("title").textContent = kind === "confirm" ? "Confirm your e-mail address" : "Stop watching";
    $("mail-question").textContent = kind === "confirm"
      ? "Send the alerts of this watch to your e-mail address?"
      : "Stop this watch and erase everything kept about it (its photo's fingerprints and its alerts)?";
    const button = $("mail-button");
    button.textContent = kind === "confirm" ? "Confirm my address" : "Stop watching and erase everything";
    $("mail-action").hidden = false;
    button.addEventListener("click", async () => {
      button.disabled = true;
      const { response, data } = await post(location.pathname, {});
      $("mail-action").hidden = true;
      if (!response.ok) { gone(errorOf(data, "That did not work.")); return; }
      status.className = "empty";
      status.textContent = kind === "confirm"
        ? "Your address is confirmed: new clones will be e-mailed to " + data.email + "."
        : "You are no longer watched: this watch, its photo's fingerprints and its alerts are erased.";
    });
  }

  // Another private link pasted into this tab changes only the fragment: open that watch.
  window.addEventListener("hashchange", () => location.reload());

  const mail = /^\/watch\/(confirm|stop)\/([^/]+)$/.exec(location.pathname);
  if (mail) {
    mailLink(mail[1]);
  } else if (location.hash.length > 1) {
    token = location.hash.slice(1);
    openPrivatePage().catch((error) => gone("Your watch could not be opened: " + error));
  } else {
    gone("This page needs the private link you were given when you asked to be watched.");
  }
})();
