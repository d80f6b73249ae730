"""Summarise py-spy's raw (collapsed) stacks: share of samples per phase, per project function, per leaf.

.venv/bin/python bench/profile_summary.py bench/results/profile-barclose-worker-*.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# Phases of the pipeline, matched against a stack's frames (first match from the leaf up wins).
PHASES = (
    (
        "idle: waiting for a task (pool pipe / broker)",
        r"\b(_recv|recv|poll|select|_wait_for_data|read) \((billiard|kombu|selectors|multiprocessing)",
    ),
    ("Celery publish (apply_async)", r"\bapply_async \(|\bsend_task \("),
    ("paper broker: price update / matching", r"paper_price_update|_Matcher|_crossing_price"),
    ("paper broker: account sync", r"\baccount_sync \(|_sync_orders|_apply_fills|_correct_positions"),
    ("paper broker: place order / book", r"\(.*brokers/paper/"),
    ("leases and claims", r"\b(_claim|_lease_renew|_claimable) \("),
    ("in-order checks (_in_order head queries)", r"\b_in_order \("),
    (
        "signal judging (recorder, risk, traders)",
        r"\b(_signal_judge|recorder_signal_evaluate|traders_for_recorder) \(",
    ),
    ("decision planning", r"\b_decision_plan \("),
    ("decision submit / orders", r"\b(_decision_submit|order_submit|_submit_group|_create_orders) \("),
    ("webhook view", r"\b_webhook \("),
    ("gunicorn / WSGI outside the view", r"gunicorn/"),
)


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    return stack.split(";"), int(count)


def summarise(path: Path, top: int = 15) -> dict:
    samples = 0
    phases: Counter = Counter()
    inclusive: Counter = Counter()
    leaves: Counter = Counter()
    db_wait = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        samples += count
        label = "other"
        for name, pattern in PHASES:
            if any(re.search(pattern, frame) for frame in frames):
                label = name
                break
        phases[label] += count
        if any("psycopg" in frame for frame in frames):
            db_wait += count
        seen = set()
        for frame in frames:
            if "/site-packages/" in frame or "/lib/python" in frame:
                continue
            name = re.sub(r":\d+\)", ")", frame)
            if name not in seen:
                seen.add(name)
                inclusive[name] += count
        leaves[re.sub(r":\d+\)", ")", frames[-1])] += count

    def share(counter: Counter) -> list[tuple[str, float]]:
        return [(name, round(100 * n / samples, 1)) for name, n in counter.most_common(top)]

    return {
        "samples": samples,
        "phases_percent": share(phases),
        "in_psycopg_percent": round(100 * db_wait / samples, 1) if samples else 0,
        "project_functions_inclusive_percent": share(inclusive),
        "leaf_functions_percent": share(leaves),
    }


if __name__ == "__main__":
    import json

    for argument in sys.argv[1:]:
        print(argument)
        print(json.dumps(summarise(Path(argument)), indent=2))
