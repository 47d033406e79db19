"""What the benchmarks say about the machine they ran on (imported by the scripts in bench/,
which run as ``python bench/<script>.py`` and so find this module beside them)."""

import platform


def cpu_name():
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
