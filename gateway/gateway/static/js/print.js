// « Imprimer » on the carte print view: progressive enhancement. Without
// JavaScript the button stays hidden and the browser's own print command
// works; with it, the button appears and opens the print dialog. Kept in a
// file because the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var holder = document.querySelector("[data-print]");
  if (!holder || typeof window.print !== "function") {
    return;
  }
  holder.hidden = false;
  holder.querySelector("button").addEventListener("click", function () {
    window.print();
  });
})();
