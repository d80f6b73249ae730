"""Settings for the ceiling-B web process only: production settings with one extra URL (bench/ceiling)."""

from justtrades.settings import *  # noqa: F403

ROOT_URLCONF = "bench.ceiling.urls"
