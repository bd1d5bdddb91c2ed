// Loopline dashboard: the alias forms of the models page (sent with the admin token as a
// bearer header, like `loopline serve`'s admin routes) and the message kept across the
// reload that follows a move. Everything else works without script.
"use strict";

const FLASH_KEY = "loopline.ui.flash";

function showFlash() {
  const message = sessionStorage.getItem(FLASH_KEY);
  const box = document.getElementById("flash");
  if (!message || !box) return;
  sessionStorage.removeItem(FLASH_KEY);
  box.textContent = message;
  box.hidden = false;
}

async function sendAdminForm(form) {
  const result = document.getElementById("admin-result");
  const data = new FormData(form);
  const token = String(data.get("token") || "").trim();
  data.delete("token");
  const body = {};
  for (const [key, value] of data.entries()) body[key] = String(value);
  const headers = {"Content-Type": "application/json"};
  if (token) headers.Authorization = "Bearer " + token;
  result.className = "result";
  result.textContent = "Sending…";
  let answer = {};
  let response;
  try {
    response = await fetch(form.dataset.url, {method: "POST", headers, body: JSON.stringify(body)});
    answer = await response.json().catch(() => ({}));
  } catch (err) {
    result.className = "result bad";
    result.textContent = "The dashboard did not answer: " + err.message;
    return;
  }
  if (!response.ok) {
    result.className = "result bad";
    result.textContent = "Refused (" + response.status + "): " + (answer.error || response.statusText);
    return;
  }
  sessionStorage.setItem(FLASH_KEY, answer.message + " (" + answer.reason + ", by " + answer.actor + ")");
  location.reload();
}

document.addEventListener("DOMContentLoaded", () => {
  showFlash();
  for (const form of document.querySelectorAll("form.js-admin")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sendAdminForm(form);
    });
  }
});
