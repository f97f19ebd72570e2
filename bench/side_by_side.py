"""Two sides of one bench run, side by side: the median over rounds of
each figure for each side of a results.jsonl, and their ratio, as a
Markdown table (cluster.sh: one node against two; history_cluster.sh:
history's stream against core NATS). Imported by those scripts, and by
neighbour.sh for its result lines and failures.
"""
import json
import statistics


def load(path):
    """The result lines of a results.jsonl."""
    return [json.loads(line) for line in open(path) if line.strip()]


def median(rows, label, get):
    """The median of `get(results)` over the good rows of side `label`,
    and how many rows gave it; (None, 0) when none did."""
    values = []
    for row in rows:
        if row.get("server") == label and row.get("ok"):
            try:
                value = get(row["results"])
            except (KeyError, TypeError):
                continue
            if value is not None:
                values.append(value)
    return (statistics.median(values), len(values)) if values else (None, 0)


def table(rows, figures, heading, first, second, ratio_title, second_over_first):
    """Prints one row per (name, get, format) of `figures`: each side's
    median (`first` and `second` are (label, column title)), their ratio
    (second over first, or first over second) and the fewest rounds."""
    print(f"| {heading} | {first[1]} | {second[1]} | {ratio_title} | rounds |")
    print("| --- | --- | --- | --- | --- |")
    for name, get, fmt in figures:
        a, rounds_a = median(rows, first[0], get)
        b, rounds_b = median(rows, second[0], get)
        num, den = (b, a) if second_over_first else (a, b)
        ratio = f"{num / den:.2f}" if num is not None and den else "n/a"
        shown = [fmt.format(v) if v is not None else "n/a" for v in (a, b)]
        print(f"| {name} | {shown[0]} | {shown[1]} | {ratio} | {min(rounds_a, rounds_b)} |")


def failures(rows):
    """Prints each run that failed, with why."""
    for row in rows:
        if not row.get("ok"):
            print(f"\nfailed: {row.get('server')}: {row.get('error') or row.get('failures')}")
