#!/usr/bin/env python3
"""Where a kernel's warps wait, from Nsight Compute's per-instruction page:
the warp stall samples by reason (all samples), by opcode, and the SASS
instructions with the most samples.

  ncu -i prof.ncu-rep --page source --print-source sass --csv > src.csv
  python3 bench/ncu_stalls.py src.csv [--top 8]
"""
import argparse
import collections
import csv

SAMPLES = "Warp Stall Sampling (All Samples)"


def load(path):
    """The instructions of the CSV: (samples, SASS text, {reason: samples})."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    # Row 0 names the kernel; row 1 is the header.
    header = rows[1]
    column = {name: i for i, name in enumerate(header)}
    reasons = [h for h in header if h.startswith("stall_") and "(Not Issued)" not in h]
    out = []
    for row in rows[2:]:
        if len(row) < len(header):
            continue
        by_reason = {r[len("stall_"):]: int(row[column[r]] or 0) for r in reasons}
        out.append((int(row[column[SAMPLES]] or 0), row[column["Source"]].strip(), by_reason))
    return out


def opcode(sass):
    words = sass.split()
    op = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
    return op.split(".")[0]


def percentages(counter, total, top=None):
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in counter.most_common(top) if v)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv")
    parser.add_argument("--top", type=int, default=8, help="instructions listed (default 8)")
    args = parser.parse_args()
    instructions = load(args.csv)
    total = sum(s for s, _, _ in instructions)
    if total == 0:
        raise SystemExit(f"{args.csv}: no stall samples (was the profile taken with the SourceCounters section?)")
    reasons, opcodes = collections.Counter(), collections.Counter()
    for samples, sass, by_reason in instructions:
        reasons.update(by_reason)
        opcodes[opcode(sass)] += samples
    print(f"stall samples: {percentages(reasons, total, 10)} (of {total})")
    print(f"by opcode: {percentages(opcodes, total, 12)}")
    for samples, sass, by_reason in sorted(instructions, key=lambda i: -i[0])[: args.top]:
        main_reasons = ", ".join(f"{k} {v}" for k, v in collections.Counter(by_reason).most_common(2) if v)
        print(f"{samples:6d}  {sass[:60]:60s}  {main_reasons}")


if __name__ == "__main__":
    main()
