// Dark / light theme, loaded in <head> so the first paint already has the right colours.
// The choice is kept in localStorage ("uns.theme"); without one the system's prefers-color-scheme
// decides, and follows it when it changes. style.css holds the colours (CSS variables per theme).
"use strict";

(() => {
  const KEY = "uns.theme";
  const system = window.matchMedia("(prefers-color-scheme: dark)");
  const chosen = () => { const t = localStorage.getItem(KEY); return t === "dark" || t === "light" ? t : null; };
  const apply = (theme) => {
    document.documentElement.dataset.theme = theme;
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    // the button names the theme it switches to; aria-pressed says whether dark is on
    button.textContent = theme === "dark" ? "Light" : "Dark";
    button.setAttribute("aria-pressed", String(theme === "dark"));
  };
  const current = () => chosen() || (system.matches ? "dark" : "light");
  apply(current());
  system.addEventListener("change", () => { if (!chosen()) apply(current()); });
  document.addEventListener("DOMContentLoaded", () => {
    apply(current());
    document.getElementById("theme-toggle").addEventListener("click", () => {
      const next = current() === "dark" ? "light" : "dark";
      localStorage.setItem(KEY, next);
      apply(next);
    });
  });
})();
