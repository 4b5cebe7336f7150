"""Node metrics through prometheus_client, one CollectorRegistry per Node (in-process test networks keep their
nodes' figures apart). The call API predates the library and stays: ``inc(name, amount, **labels)`` for
counters, ``gauge(name, fn)`` for values read at scrape time, ``observe(name, seconds, **labels)`` for the
latency histograms, ``get`` to read a counter (tests, benchmarks), ``render`` for the text exposition format.

Metric objects are created on first use with the label names of that use; a later call with other label names
for the same metric is a bug (prometheus_client raises ValueError). The registry also carries the standard
process collector (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``process_open_fds``, …) and
the per-task gauges ``set_task_figures`` sets at scrape time (champion accuracy, final rounds by outcome, bounty
and shards left, one series per task). What it does not do: push gateways, multiprocess mode.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    exposition,
    generate_latest,
)

# our names are all legacy ASCII names, so the classic 0.0.4 text format is exact and every scraper reads it
CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST)
disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: scrapers compute rates from the counters themselves

# seconds; block validation and scoring run from sub-millisecond (cached, small models) to seconds
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROUND_BUCKETS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "popchain_block_validation_duration_seconds": ("engine time to judge one block (scoring included)", LATENCY_BUCKETS),
    "popchain_model_scoring_duration_seconds": ("engine time to judge an opened block whose model is scored",
                                       LATENCY_BUCKETS),
    "popchain_round_duration_seconds": ("round latency seen by this node: round opened -> verdict (crowned/void)",
                               ROUND_BUCKETS),
    "popchain_relay_duration_seconds": ("object arrival -> announced to peers (validation included)", LATENCY_BUCKETS),
}


METRICS_TASK_S = 5.0   # a scrape waits at most this long for fresh per-task figures (then serves the last ones)
OUTCOMES = ("crowned", "void", "plain")


class TaskFigures(Protocol):
    """One task's figures (node.explorer.deps.TaskFigures)."""
    task_id: int
    champion_accuracy: float | None
    crowned: int
    void: int
    plain: int
    bounty_left: int
    shards_left: int


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[str, Histogram] = {}
        # CPU seconds, resident and virtual memory, open and max file descriptors, start time (Linux /proc)
        ProcessCollector(registry=self.registry)
        self._task_accuracy = Gauge("popchain_task_champion_accuracy", "accuracy of each task's standing champion "
                                    "on the task's latest revealed shard", ["task"], registry=self.registry)
        self._task_rounds = Gauge("popchain_task_rounds", "final rounds of each task by outcome (crowned, void, "
                                  "plain)", ["task", "outcome"], registry=self.registry)
        self._task_bounty = Gauge("popchain_task_bounty_left_grains", "grains left in each task's bounty escrow",
                                  ["task"], registry=self.registry)
        self._task_shards = Gauge("popchain_task_shards_left", "hidden shards each task has left", ["task"],
                                  registry=self.registry)

    def set_task_figures(self, figures: Sequence[TaskFigures]) -> None:
        """Per-task gauges, one series per task (``task`` label = the task id)."""
        for f in figures:
            task = str(f.task_id)
            if f.champion_accuracy is not None:
                self._task_accuracy.labels(task=task).set(f.champion_accuracy)
            for outcome in OUTCOMES:
                self._task_rounds.labels(task=task, outcome=outcome).set(getattr(f, outcome))
            self._task_bounty.labels(task=task).set(f.bounty_left)
            self._task_shards.labels(task=task).set(f.shards_left)

    @staticmethod
    def _base(name: str) -> str:
        return name.removesuffix("_total")  # prometheus_client adds _total itself

    def _counter(self, name: str, labels: dict[str, str]) -> Counter:
        c = self._counters.get(name)
        if c is None:
            c = Counter(self._base(name), name.replace("_", " "), sorted(labels), registry=self.registry)
            self._counters[name] = c
        return c

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        c = self._counter(name, labels)
        (c.labels(**{k: str(v) for k, v in labels.items()}) if labels else c).inc(amount)

    def get(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(self._base(name) + "_total", {k: str(v) for k, v in labels.items()})
        return 0.0 if value is None else value

    def total(self, name: str) -> float:
        """A counter summed over all its label sets (0 if it was never incremented)."""
        c = self._counters.get(name)
        if c is None:
            return 0.0
        return sum(s.value for metric in c.collect() for s in metric.samples if s.name.endswith("_total"))

    def gauge(self, name: str, fn: Callable[[], float], help_text: str = "") -> None:
        g = self._gauges.get(name)
        if g is None:
            g = Gauge(name, help_text or name.replace("_", " "), registry=self.registry)
            self._gauges[name] = g

        def read() -> float:
            try:
                return float(fn())
            except Exception:  # noqa: BLE001  (a gauge must never break the endpoint)
                return float("nan")
        g.set_function(read)

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        h = self._histograms.get(name)
        if h is None:
            help_text, buckets = HISTOGRAMS.get(name, (name.replace("_", " "), LATENCY_BUCKETS))
            h = Histogram(name, help_text, sorted(labels), buckets=buckets, registry=self.registry)
            self._histograms[name] = h
        (h.labels(**{k: str(v) for k, v in labels.items()}) if labels else h).observe(seconds)

    def count(self, name: str, **labels: str) -> float:
        """How many observations a histogram has (tests, benchmarks)."""
        value = self.registry.get_sample_value(name + "_count", {k: str(v) for k, v in labels.items()})
        return 0.0 if value is None else value

    def render(self) -> str:
        return generate_latest(self.registry).decode()
