// The musicrec page: search, "more like this", a user's history and recommendations. No build step.
"use strict";

const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// GET a JSON endpoint; throws Error(the server's {"error"} message) on a non-2xx answer.
async function api(path) {
  const response = await fetch(path);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function audioUrl(audioPath) {
  return "/audio/" + audioPath.split("/").map(encodeURIComponent).join("/");
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// One <li> per track: title, artist, score, tags, a player and (optionally) "more like this".
function renderTracks(list, items, { showScore = true, moreLikeThis = true } = {}) {
  list.replaceChildren();
  if (!items.length) list.append(element("li", "muted", "nothing here"));
  for (const item of items) {
    const li = element("li", "track");
    li.dataset.trackId = item.track_id;
    const head = element("div", "head");
    head.append(element("span", "title", item.title), element("span", "artist", item.artist));
    if (showScore) head.append(element("span", "score", item.score.toFixed(3)));
    li.append(head);
    const tags = element("div", "tags");
    for (const tag of item.tags) tags.append(element("span", "tag", tag));
    li.append(tags);
    const controls = element("div", "controls");
    if (item.audio_path) {
      const player = element("audio");
      player.controls = true;
      player.preload = "none";
      player.src = audioUrl(item.audio_path);
      controls.append(player);
    }
    if (moreLikeThis) {
      const button = element("button", "more", "more like this");
      button.type = "button";
      button.addEventListener("click", () => moreLike(item));
      controls.append(button);
    }
    li.append(controls);
    list.append(li);
  }
}

function showResults(title, items) {
  $("results-title").textContent = title;
  $("results-title").hidden = false;
  renderTracks($("results"), items);
}

async function search(event) {
  event.preventDefault();
  const q = $("q").value.trim();
  if (!q) return;
  try {
    const body = await api(`/api/search?q=${encodeURIComponent(q)}&k=20`);
    showResults(`Results for “${q}”`, body.items);
    showError("");
  } catch (error) {
    showError(`search: ${error.message}`);
  }
}

async function moreLike(item) {
  try {
    const body = await api(`/api/similar/${encodeURIComponent(item.track_id)}?k=20`);
    showResults(`More like “${item.title}”`, body.items);
    showError("");
    $("results-title").scrollIntoView({ block: "start" });
  } catch (error) {
    showError(`more like this: ${error.message}`);
  }
}

async function fillUsers() {
  try {
    const body = await api(`/api/users?prefix=${encodeURIComponent($("user").value)}&limit=50`);
    $("user-ids").replaceChildren(...body.users.map((id) => Object.assign(element("option"), { value: id })));
  } catch (error) {
    showError(`users: ${error.message}`);
  }
}

async function showUser(event) {
  event.preventDefault();
  const user = $("user").value.trim();
  if (!user) return;
  try {
    const id = encodeURIComponent(user);
    const [recommended, played] = await Promise.all([api(`/api/recommend/${id}?k=20`), api(`/api/users/${id}/history`)]);
    renderTracks($("recommendations"), recommended.items);
    renderTracks($("history"), played.items, { showScore: false });
    $("recommendations-title").textContent = `Recommendations for ${user}`;
    $("history-title").textContent = `History of ${user}`;
    $("user-panel").hidden = false;
    showError("");
  } catch (error) {
    $("user-panel").hidden = true;
    showError(`user ${user}: ${error.message}`);
  }
}

async function showRelease() {
  try {
    const body = await api("/api/health");
    $("release").textContent = `release ${body.release}: ${body.recommender} on ${body.backbone}`;
  } catch (error) {
    showError(`health: ${error.message}`);
  }
}

$("search-form").addEventListener("submit", search);
$("user-form").addEventListener("submit", showUser);
$("user").addEventListener("input", fillUsers);
fillUsers();
showRelease();
