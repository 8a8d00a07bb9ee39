"""How fast is redaction on a clean result? The budget: 1 MB with nothing to redact in 10 ms.

Builds 1 MB inputs with no secrets in them (English prose; JSON log lines full of numbers,
UUIDs, SHA-1s and addresses; structuredContent rows of 7,000 and of 57,000 strings) and times
`Redactor.redact_text` / `redact_result` on each, for the default configuration, secrets only,
and every PII kind on. The last rows run the same detectors (all PII on, cards aside) as one
alternation regex per view, the design the redactor does not use, to show why (see
bastion/guard/redact/detectors.py).

    python bench/redact_speed.py [--rounds N]

Figures are the best and the median of N rounds, in ms; the best is the one to hold against
the budget (other processes on the machine only ever add time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Measure the `bastion` of the work tree this file is in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.config.redaction import PII_KINDS, RedactionConfig
from bastion.guard.redact import Redactor
from bastion.guard.redact.detectors import PII_DETECTORS, SECRETS
from bastion.guard.redact.scanner import Views

SIZE = 1_000_000
PROSE = """The analyst opened the incident ticket and read the summary twice before she
escalated it. Several hosts in the eastern data centre had reported failed logins during the
night, most of them against service accounts that nobody had touched in months. The security
team keeps a list of those accounts, and every quarter someone promises to clean it up. This
time the pattern was different: the attempts came in short bursts, a few minutes apart, from
addresses that belonged to a cloud provider. She checked the firewall rules, compared the
timestamps with the deployment calendar, and asked the on-call engineer whether a new job had
been scheduled. It had not. By lunch the team had blocked the ranges, rotated the credentials
of every affected account, and written a short note for the weekly review. Nobody was happy
with how long the old accounts had been left alone, but the quick response kept the damage
small, and the review became a discussion about ownership rather than blame."""


def prose(rng: random.Random) -> str:
    sentences = [s.strip() + "." for s in PROSE.replace("\n", " ").split(".") if s.strip()]
    parts, size = [], 0
    while size < SIZE:
        paragraph = " ".join(rng.choice(sentences) for _ in range(6)) + "\n\n"
        parts.append(paragraph)
        size += len(paragraph)
    return "".join(parts)[:SIZE]


def log_lines(rng: random.Random) -> str:
    parts, size = [], 0
    while size < SIZE:
        record = {
            "id": rng.randint(1, 10**12), "event": rng.choice(["login", "logout", "query"]),
            "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
            "sha": hashlib.sha1(str(size).encode()).hexdigest(),
            "ts": f"2024-05-{rng.randint(1, 28):02d}T12:{rng.randint(0, 59):02d}:00Z",
            "src": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "port": rng.randint(1, 65535), "bytes": rng.randint(0, 10**6),
            "msg": f"handled request for tenant {rng.randint(1, 999)} in "
                   f"{rng.randint(1, 500)} ms",
        }
        line = json.dumps(record) + "\n"
        parts.append(line)
        size += len(line)
    return "".join(parts)[:SIZE]


def structured(rng: random.Random, words: int) -> dict[str, Any]:
    """A tool result whose structuredContent holds rows of three strings (a note of `words`
    words, a host name, a status), 1 MB of text in all."""
    rows = []
    size = 0
    while size < SIZE:
        row = {"host": f"web-{rng.randint(1, 999)}.example.internal",
               "status": rng.choice(["ok", "degraded", "failed"]),
               "note": " ".join(rng.choice(PROSE.split()) for _ in range(words))}
        rows.append(row)
        size += sum(len(value) for value in row.values())
    return {"content": [{"type": "text", "text": "query finished"}],
            "structuredContent": {"rows": rows}}


def timed(function: Callable[[], Any], rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return min(samples), statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    rng = random.Random(7)
    inputs = {"prose": prose(rng), "json-logs": log_lines(rng)}
    results = [structured(rng, 40), structured(rng, 4)]
    configs = {
        "default": RedactionConfig(),
        "secrets only": RedactionConfig(pii=[]),
        "all PII": RedactionConfig(pii=list(PII_KINDS)),
    }
    print(f"{'input':<22}{'configuration':<16}{'best ms':>9}{'median ms':>11}  redactions")
    for config_name, config in configs.items():
        redactor = Redactor(config)
        for input_name, text in inputs.items():
            _, report = redactor.redact_text(text)
            best, median = timed(lambda r=redactor, t=text: r.redact_text(t), rounds)
            print(f"{input_name:<22}{config_name:<16}{best:>9.2f}{median:>11.2f}  {report.total}")
        for result in results:
            out, report = redactor.redact_result(result)
            assert out is result or report
            best, median = timed(lambda r=redactor, x=result: r.redact_result(x), rounds)
            strings = len(result["structuredContent"]["rows"]) * 3
            print(f"{f'result, {strings} strs':<22}{config_name:<16}{best:>9.2f}"
                  f"{median:>11.2f}  {report.total}")
    # The road not taken: per view, every detector in one alternation, scanned once.
    detectors = [*SECRETS, *(d for d in PII_DETECTORS.values() if not d.needles)]
    by_view: dict[str, list[bytes]] = {}
    for i, d in enumerate(detectors):
        body = re.sub(rb"\(\?P([<=])(\w+)", rb"(?P\1\2_%d" % i, d.pattern)
        by_view.setdefault(d.source, []).append(re.escape(d.anchor) + b"(?:" + body + b")")
    combined = {view: re.compile(b"|".join(parts)) for view, parts in by_view.items()}
    for input_name, text in inputs.items():
        views = Views(text)

        def one_pass_per_view(views: Views = views) -> None:
            for view, regex in combined.items():
                list(regex.finditer(views.of(view)))  # type: ignore[arg-type]

        best, median = timed(one_pass_per_view, max(3, rounds // 5))
        print(f"{input_name:<22}{'alternations':<16}{best:>9.2f}{median:>11.2f}  (not used)")

if __name__ == "__main__":
    main()
