/* Trading pages: dimmed toggles, take-profit rows, trader defaults from the signal source, copy buttons, charts. */
(function () {
  "use strict";

  // --- copy buttons -------------------------------------------------------------------------------------
  function copyText(field, button) {
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done);
    } else {
      field.select();
      document.execCommand("copy");
      done();
    }
  }
  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.querySelector(button.getAttribute("data-copy-target"));
      if (field) { copyText(field, button); }
    });
  });

  // --- confirmations for destructive forms ---------------------------------------------------------------
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });

  // --- trader defaults: the chosen recorder's settings ---------------------------------------------------
  var settingsNode = document.getElementById("recorder-settings");
  var recorderSettings = settingsNode ? JSON.parse(settingsNode.textContent) : {};
  var recorderSelect = document.querySelector("[data-trader-form] select[name=recorder]");

  function chosenRecorder() {
    return recorderSelect ? recorderSettings[recorderSelect.value] || null : null;
  }

  // A toggle's effective state: a checkbox is on when ticked; an override select falls back to the recorder.
  function isOn(control) {
    if (control.type === "checkbox") { return control.checked; }
    if (control.value === "true") { return true; }
    if (control.value === "false") { return false; }
    var recorder = chosenRecorder();
    var name = control.getAttribute("data-override") || control.name;
    return !!(recorder && recorder[name]);
  }

  function refreshDimmed() {
    document.querySelectorAll("[data-dim-when-off]").forEach(function (block) {
      var control = document.getElementById(block.getAttribute("data-dim-when-off"));
      if (!control) { return; }
      var on = isOn(control);
      block.classList.toggle("dimmed", !on);
      block.setAttribute("aria-disabled", on ? "false" : "true");
    });
  }

  function describe(value, select) {
    if (value === null || value === undefined || value === "") { return "none"; }
    if (value === true) { return "on"; }
    if (value === false) { return "off"; }
    if (select) {
      var option = select.querySelector('option[value="' + value + '"]');
      if (option) { return option.textContent; }
    }
    return String(value);
  }

  function showRecorderDefaults() {
    var recorder = chosenRecorder();
    document.querySelectorAll("[data-trader-form] [data-override]").forEach(function (field) {
      var name = field.getAttribute("data-override");
      var value = recorder ? recorder[name] : null;
      if (field.tagName === "SELECT") {
        var first = field.options[0];
        if (first && (first.value === "" || first.value === "unknown")) {
          first.textContent = recorder ? "Recorder's (" + describe(value, field) + ")" : "Recorder's";
        }
      } else if (field.type === "time") {
        var hint = document.getElementById(field.id + "_helptext");
        if (hint) { hint.textContent = recorder ? "Empty: the recorder's " + (value || "none") + "." : "Empty: the recorder's time."; }
      } else {
        field.placeholder = recorder && value !== null && value !== "" ? String(value) : "recorder's";
      }
    });
    var targets = document.querySelector("[data-recorder-targets]");
    if (targets) {
      if (!recorder) {
        targets.textContent = "";
      } else if (!recorder.tp_targets.length) {
        targets.textContent = "The recorder places no take-profit.";
      } else {
        targets.textContent = "The recorder's targets: " + recorder.tp_targets.map(function (target) {
          return target.value + " " + recorder.tp_units + (target.trim ? " × " + target.trim : " (the rest)");
        }).join(", ") + ".";
      }
    }
    refreshDimmed();
  }

  // --- trader sub-accounts: only those of the chosen account ---------------------------------------------
  var accountSelect = document.querySelector("[data-trader-form] select[name=account]");
  function showSubaccounts() {
    if (!accountSelect) { return; }
    var shown = 0;
    document.querySelectorAll("[data-subaccount-row]").forEach(function (row) {
      var visible = row.getAttribute("data-account") === accountSelect.value;
      row.hidden = !visible;
      row.classList.toggle("d-flex", visible);
      if (visible) { shown += 1; }
    });
    var empty = document.querySelector("[data-no-subaccounts]");
    if (empty) { empty.hidden = !accountSelect.value || shown > 0; }
  }

  // --- broker account form: Tradovate fields only for Tradovate ------------------------------------------
  function showTradovateFields() {
    var chosen = document.querySelector("[data-account-form] input[name=kind]:checked");
    var fields = document.querySelector("[data-tradovate-fields]");
    if (chosen && fields) { fields.hidden = chosen.value !== "tradovate"; }
  }

  // --- take-profit rows -----------------------------------------------------------------------------------
  document.querySelectorAll("[data-formset]").forEach(function (formset) {
    var prefix = formset.getAttribute("data-formset");
    var total = formset.querySelector('input[name="' + prefix + '-TOTAL_FORMS"]');
    var maximum = parseInt(formset.querySelector('input[name="' + prefix + '-MAX_NUM_FORMS"]').value, 10);
    var rows = formset.querySelector("[data-formset-rows]");
    var template = formset.querySelector("template[data-formset-empty]");
    var addButton = formset.querySelector("[data-formset-add]");

    function renumber() {
      var number = 0;
      rows.querySelectorAll("[data-formset-row]").forEach(function (row) {
        if (!row.hidden) { number += 1; row.querySelector("[data-row-number]").textContent = number; }
      });
      addButton.disabled = number >= maximum;
    }
    function wireRemove(row) {
      row.querySelector("[data-formset-remove]").addEventListener("click", function () {
        var remove = row.querySelector('input[name$="-DELETE"]');
        remove.value = "on";
        row.hidden = true;
        renumber();
      });
    }
    rows.querySelectorAll("[data-formset-row]").forEach(function (row) {
      var remove = row.querySelector('input[name$="-DELETE"]');
      if (remove && (remove.value === "on" || remove.value === "True")) { row.hidden = true; }
      wireRemove(row);
    });
    addButton.addEventListener("click", function () {
      var index = parseInt(total.value, 10);
      var html = template.innerHTML.replace(/__prefix__/g, String(index));
      var holder = document.createElement("tbody");
      holder.innerHTML = html.trim();
      var row = holder.firstElementChild;
      rows.appendChild(row);
      total.value = String(index + 1);
      wireRemove(row);
      renumber();
      var first = row.querySelector("input:not([type=hidden])");
      if (first) { first.focus(); }
    });
    renumber();
  });

  // --- charts ---------------------------------------------------------------------------------------------
  function drawCharts() {
    if (typeof window.Chart === "undefined") { return; }
    var styles = getComputedStyle(document.body);
    var text = styles.getPropertyValue("--bs-body-color").trim() || "#dee2e6";
    var grid = styles.getPropertyValue("--bs-border-color").trim() || "#495057";
    var green = styles.getPropertyValue("--bs-success").trim() || "#198754";
    var red = styles.getPropertyValue("--bs-danger").trim() || "#dc3545";
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.getAttribute("data-chart"));
      if (!source) { return; }
      var data = JSON.parse(source.textContent);
      var kind = canvas.getAttribute("data-chart-kind") || "line";
      var colors = data.values.map(function (value) { return value < 0 ? red : green; });
      new window.Chart(canvas, {
        type: kind,
        data: {
          labels: data.labels,
          datasets: [{
            label: kind === "bar" ? "Realized P&L ($)" : "Cumulative realized P&L ($)",
            data: data.values,
            borderColor: kind === "bar" ? colors : green,
            backgroundColor: kind === "bar" ? colors : "rgba(25, 135, 84, 0.15)",
            fill: kind !== "bar",
            tension: 0.2,
            pointRadius: data.values.length > 60 ? 0 : 2
          }]
        },
        options: {
          maintainAspectRatio: false,
          animation: false,
          plugins: { legend: { display: false } },
          scales: {
            x: { ticks: { color: text, maxTicksLimit: 8 }, grid: { color: grid } },
            y: { ticks: { color: text, callback: function (value) { return "$" + value; } }, grid: { color: grid } }
          }
        }
      });
    });
  }

  if (recorderSelect) { recorderSelect.addEventListener("change", showRecorderDefaults); }
  if (accountSelect) { accountSelect.addEventListener("change", showSubaccounts); }
  document.querySelectorAll("[data-account-form] input[name=kind]").forEach(function (radio) {
    radio.addEventListener("change", showTradovateFields);
  });
  document.querySelectorAll("[data-settings-form] input[type=checkbox], [data-settings-form] select").forEach(function (control) {
    control.addEventListener("change", refreshDimmed);
  });
  showRecorderDefaults();
  showSubaccounts();
  showTradovateFields();
  refreshDimmed();
  drawCharts();
})();
