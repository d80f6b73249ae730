"""Benchmark the alert -> broker pipeline as production runs it (issue 12): `make bench`.

Starts, on 127.0.0.1 only and in a temp folder removed at the end: its own PostgreSQL 15 (fsync off), its own
Redis, gunicorn with the README's production flags, the README's Celery processes (orders/default worker,
reconcile worker, beat), a ceiling-B web process, and the test suite's fake Tradovate (with an answer delay
and an arrival log) in this process. Creates users, paper and Tradovate accounts, recorders and traders
through trading.services, then runs the scenarios and reports JSON (bench/results/) and a short table.

    .venv/bin/python bench/pipeline.py                     # everything, full sizes
    .venv/bin/python bench/pipeline.py --quick             # small sizes, a minute or two
    .venv/bin/python bench/pipeline.py --only barclose,fanout --profile

Every scenario is bounded in count and time; the whole run stops itself after --max-seconds.
Process command lines live in ONE place, process_table(): change it when the task/queue layout changes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script from bench/: the project root must be importable before the bench modules are.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scenarios import (
    SCENARIOS,
    retire_unprocessed,
    scenario_barclose,
    scenario_fanout,
    scenario_idle,
    scenario_ingest,
    scenario_mixed,
    scenario_queries,
)
from bench.stack import PIPELINE, PROJECT, RESULTS, Stack, log

# --- main ---------------------------------------------------------------------------------------------------


def ensure_tools() -> None:
    missing = [
        tool
        for tool, package in (("wrk", "wrk"), ("ab", "apache2-utils"), ("redis-server", "redis-server"))
        if not shutil.which(tool)
    ]
    if not missing:
        return
    packages = {"wrk": "wrk", "ab": "apache2-utils", "redis-server": "redis-server"}
    log(f"installing {' '.join(packages[m] for m in missing)} from Debian")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *(packages[m] for m in missing)], check=True, env=env)


def table(results: dict) -> str:
    rows = []

    def add(name: str, value: Any) -> None:
        rows.append(f"{name:<58} {value}")

    if "ingest" in results:
        i = results["ingest"]
        add("ingest answers/s (wrk, median of rounds)", i["answers_per_second"])
        add("ceiling B answers/s", i["ceiling_answers_per_second"])
        add("ratio to ceiling", i["ratio_to_ceiling"])
        w = i["rounds"][0]["webhook"]
        add("ingest p50 / p99 ms (round 1)", f"{w['p50_ms']} / {w['p99_ms']}")
        b, c = i["burst"]["webhook"], i["burst"]["ceiling"]
        add(
            f"burst {b['complete']} (ab -c 200): s, p99, max ms",
            f"{b['seconds']} s, {b['p99_ms']}, {b['max_ms']}",
        )
        add("ceiling burst: s, p99, max ms", f"{c['seconds']} s, {c['p99_ms']}, {c['max_ms']}")
        add("ingest lost (wrk, burst)", f"{i['wrk_lost']}, {i['burst_lost']}")
    if "queries" in results:
        for label, phases in results["queries"]["alerts"].items():
            add(f"SQL per paper alert, {label}", " ".join(f"{k}={v['total']}" for k, v in phases.items()))
    if "idle" in results:
        for key in ("no_delay", "with_delay"):
            d = results["idle"][key]
            add(
                f"idle alert->placeoso p50/p99 ms ({key})",
                f"{d['entry_placeoso'].get('p50_ms')} / {d['entry_placeoso'].get('p99_ms')}",
            )
    if "barclose" in results:
        for size, r in results["barclose"].items():
            s = r["send_to_paper_order"]
            add(
                f"bar close {size}: send->paper order p50/p99/max ms",
                f"{s.get('p50_ms')} / {s.get('p99_ms')} / {s.get('max_ms')} ({s['n']} orders)",
            )
            w = r["signal_wait_to_processed"]
            add(
                f"bar close {size}: signal wait p50/max ms, stale",
                f"{w.get('p50_ms')} / {w.get('max_ms')}, {r['stale_decisions']}",
            )
    if "mixed" in results:
        m = results["mixed"]
        add(
            f"mixed {m['alerts']}/{m['recorders']}: settled/s, stale decisions",
            f"{m['settled_per_second']}, {m['stale_decisions']} of {sum(m['decision_status'].values())}",
        )
        add("mixed: lost, duplicated", f"{m['lost']}, {sum(m['duplicated'].values())}")
    if "fanout" in results:
        f = results["fanout"]
        for key in ("cold_buy", "warm_buy"):
            add(
                f"fan-out {f['accounts']} accounts ({key}): first/last ms",
                f"{f[key]['first_ms']} / {f[key]['last_ms']} ({f[key]['accounts_reached']} reached)",
            )
    for name, m in results.get("memory", {}).items():
        add(f"peak RSS MB {name}: parent, largest child", f"{m['parent_peak_mb']}, {m['max_child_mb']}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a quick check")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy a gunicorn worker (ingest) and the orders worker's pool (bar close)",
    )
    parser.add_argument("--fake-delay-ms", type=float, default=20.0)
    parser.add_argument("--wrk-seconds", type=int, default=None)
    parser.add_argument("--ingest-rounds", type=int, default=None)
    parser.add_argument("--burst", type=int, default=None)
    parser.add_argument("--idle", type=int, default=None, help="alerts per idle run (alternating buy/close)")
    parser.add_argument("--barclose", default=None, help="recorder counts, e.g. 50,200")
    parser.add_argument("--mixed", default=None, help="recorders x alerts each, e.g. 50x20")
    parser.add_argument("--fanout", type=int, default=None)
    parser.add_argument("--settle-timeout", type=float, default=240.0)
    parser.add_argument(
        "--max-seconds", type=float, default=1800.0, help="the whole run stops itself after this"
    )
    parser.add_argument("--output", default=None, help="JSON file (default bench/results/<time>.json)")
    options = parser.parse_args()
    quick = options.quick
    options.wrk_seconds = options.wrk_seconds or (4 if quick else 10)
    options.ingest_rounds = options.ingest_rounds or (1 if quick else 2)
    options.burst = options.burst or (400 if quick else 2000)
    options.idle = options.idle or (10 if quick else 50)
    options.barclose = [int(x) for x in (options.barclose or ("20" if quick else "50,200")).split(",")]
    options.mixed = tuple(int(x) for x in (options.mixed or ("10x6" if quick else "50x20")).split("x"))
    options.fanout = options.fanout or (10 if quick else 100)
    only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    ensure_tools()
    stack = Stack(options.fake_delay_ms / 1000)

    def stop_now(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop_now)
    timer = threading.Timer(options.max_seconds, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True
        ).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()},
        "options": dict(vars(options)),
    }
    try:
        stack.start_infrastructure()
        stack.start_fake()
        stack.configure_environment()
        stack.migrate()
        import django

        django.setup()
        if "ingest" in only:
            scenario_ingest(stack, options, results)
        if "queries" in only:
            scenario_queries(stack, options, results)
        pipeline_scenarios = [name for name in only if name in ("idle", "barclose", "mixed", "fanout")]
        if pipeline_scenarios:
            retire_unprocessed(stack)
            for name in ("web", *PIPELINE):
                stack.start(name)
            stack.wait_ready(["web", *PIPELINE])
            time.sleep(2)  # beat's first reconcile round and worker start-up settle
            for name in pipeline_scenarios:
                if True:
                    {
                        "idle": scenario_idle,
                        "barclose": scenario_barclose,
                        "mixed": scenario_mixed,
                        "fanout": scenario_fanout,
                    }[name](stack, options, results)
        stack.memory.sample()
        results["memory"] = stack.memory.report()
    finally:
        timer.cancel()
        log("stopping every process and removing the temp folder")
        stack.memory.stopping.set()
        stack.stop()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    output = Path(options.output) if options.output else RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    print(f"JSON: {output}")


if __name__ == "__main__":
    main()
