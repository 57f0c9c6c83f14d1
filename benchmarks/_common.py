"""What the benchmark scripts share: timing, memory, the Debian corpus, results."""
import collections
import gzip
import json
import platform
import resource
import time

import numpy as np


def median_times(funcs, repeat=5, progress=False):
    """Median wall time of each callable in the dict ``funcs``, by name.

    The callables take turns, so that a spell of the host running slow falls
    on all of them, not on whichever ran then. In its turn each is called
    twice and the second call timed: it finds the caches as its own call
    left them, as when one library is called again and again, not as the
    other library left them. With ``progress``, says when each round ends.
    """
    times = {name: [] for name in funcs}
    for round_ in range(repeat):
        for name, func in funcs.items():
            func()
            tic = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - tic)
        if progress:
            print(f"round {round_ + 1} of {repeat} done", flush=True)
    return {name: float(np.median(t)) for name, t in times.items()}


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine():
    """A one-line description of the machine the figures come from."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def load_debian_text(path, min_section_size=20):
    """The Debian text task: (texts, sections) for train and test, the record's split."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    counts = collections.Counter(r["section"] for r in records)
    records = [r for r in records if counts[r["section"]] >= min_section_size]
    out = {}
    for split in ("train", "test"):
        rows = [r for r in records if r["split"] == split]
        out[split] = (
            [r["summary"] + " . " + r["description"] for r in rows],
            np.array([r["section"] for r in rows]),
        )
    return out["train"], out["test"]


def save_results(path, results):
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
