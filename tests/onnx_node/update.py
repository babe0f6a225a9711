"""Rewrite the node suite's expectations from a fresh run and print a summary.

    python -m tests.onnx_node.update [--leave-out-wrong]

Refuses to write when a case gives a wrong answer or raises something other than a PopefError:
those are bugs to fix, never expectations. ``--leave-out-wrong`` writes the other cases and
leaves those out of the file, where the suite reports them as missing until they are fixed.
"""

from __future__ import annotations

import sys
from collections import Counter

from .expectations import EXPECTED_FILE, load_expected, save_expected
from .harness import iter_outcomes, load_cases


def summary(outcomes: dict) -> str:
    total = len(outcomes)
    counts = Counter(o.status.split(":")[0] for o in outcomes.values())
    lines = [
        f"{total} cases: "
        + ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in counts.most_common())
    ]
    missing: Counter = Counter()
    for o in outcomes.values():
        if o.status.startswith("refused: unsupported op "):
            for name in o.status[len("refused: unsupported op ") :].split(", "):
                missing[name] += 1
    lines.append(
        "missing ops by cases: " + ", ".join(f"{k} {v}" for k, v in missing.most_common(25))
    )
    reasons = Counter(
        o.status
        for o in outcomes.values()
        if o.status.startswith("refused: ") and "unsupported op" not in o.status
    )
    lines.append("other refusals: " + ", ".join(f"{k[9:]} {v}" for k, v in reasons.most_common()))
    return "\n".join(lines)


def main() -> int:
    import onnx

    cases = load_cases()
    outcomes = {}
    for i, (name, outcome) in enumerate(iter_outcomes(cases), 1):
        outcomes[name] = outcome
        if i % 200 == 0:
            print(f"{i}/{len(cases)} cases", file=sys.stderr)
    bad = {n: o for n, o in outcomes.items() if not o.acceptable}
    print(summary(outcomes))
    for name, o in sorted(bad.items()):
        print(f"error: {name}: {o.status} {o.detail}", file=sys.stderr)
    if bad and "--leave-out-wrong" not in sys.argv[1:]:
        print(
            f"error: {len(bad)} cases give wrong answers or crash; fix them first "
            f"({EXPECTED_FILE.name} not written)",
            file=sys.stderr,
        )
        return 1
    before = load_expected()
    save_expected({n: o.status for n, o in outcomes.items() if o.acceptable}, onnx.__version__)
    changed = sum(1 for n, o in outcomes.items() if before.get(n) != o.status)
    print(f"wrote {EXPECTED_FILE.name}: {changed} cases changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
