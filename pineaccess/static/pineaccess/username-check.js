/* Checks a TradingView username with the server as it is typed. The form works without this script: the
   server checks again on submit. Use: <input data-tradingview-username-check="/api/tradingview/validate-username">
   and an element with data-username-check-result in the same form. */
(function () {
  "use strict";

  function setup(input) {
    var url = input.getAttribute("data-tradingview-username-check");
    var form = input.form;
    var result = form ? form.querySelector("[data-username-check-result]") : null;
    if (!url || !result) {
      return;
    }
    var timer = null;
    var controller = null;
    var lastChecked = null;

    function show(text, state) {
      result.textContent = text;
      result.classList.remove("text-success", "text-danger", "text-body-secondary");
      result.classList.add(state === "ok" ? "text-success" : state === "bad" ? "text-danger" : "text-body-secondary");
      input.classList.toggle("is-valid", state === "ok");
      input.classList.toggle("is-invalid", state === "bad");
      input.setAttribute("aria-invalid", state === "bad" ? "true" : "false");
    }

    function check() {
      var value = input.value.trim();
      // The same name again (blur after change) leaves the check already under way to finish.
      if (value === lastChecked) {
        return;
      }
      if (controller) {
        controller.abort();
      }
      lastChecked = value;
      if (!value) {
        show("", "neutral");
        return;
      }
      controller = typeof AbortController === "function" ? new AbortController() : null;
      show("Checking with TradingView…", "neutral");
      fetch(url + "?username=" + encodeURIComponent(value), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        signal: controller ? controller.signal : undefined,
      })
        .then(function (response) {
          if (response.status === 429) {
            return { valid: null, error: "Too many checks; wait a moment. The name is checked again when you save." };
          }
          return response.json();
        })
        .then(function (answer) {
          if (answer.valid === true) {
            show("TradingView knows this user: " + answer.username + ".", "ok");
          } else if (answer.valid === false) {
            show(answer.error || "TradingView does not know this username.", "bad");
          } else {
            lastChecked = null;
            show(answer.error || "Could not check right now; the name is checked again when you save.", "neutral");
          }
        })
        .catch(function (error) {
          if (error && error.name === "AbortError") {
            return;
          }
          lastChecked = null;
          show("Could not check right now; the name is checked again when you save.", "neutral");
        });
    }

    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(check, 450);
    });
    input.addEventListener("blur", function () {
      window.clearTimeout(timer);
      check();
    });
    input.addEventListener("change", function () {
      window.clearTimeout(timer);
      check();
    });
    // A form shown again after an error (or filled in by the browser) already holds a name: check it now.
    if (input.value.trim()) {
      check();
    }
  }

  document.querySelectorAll("input[data-tradingview-username-check]").forEach(setup);
})();
