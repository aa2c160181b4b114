"""Count test results per suite from JUnit XML files and print the closing summary.

Every suite script leaves JUnit XML files in results/<suite>/ (pytest and ansible-test write
their own; for tools without JUnit output `record` writes a one-case file), and
scripts/run-tests.sh leaves results/<suite>/exit-status. A suite that exited non-zero without
any recorded failure (it crashed, or its tool could not start) counts as one failure, so
that nothing fails silently.

  summarize.py record SUITE NAME EXIT_STATUS [LOG_FILE]   write results/SUITE/NAME.xml
  summarize.py report SUITE [SUITE ...]                    print the table and the last line

`report` ends with the plain line "N passed, N failed" and exits 1 when anything failed.
"""

import os
import re
import sys
import xml.etree.ElementTree as ET

RESULTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
LOG_TAIL_LINES = 60
# Terminal colour sequences, and characters XML 1.0 cannot hold, are dropped from log tails.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def record(suite, name, exit_status, log_file=None):
    """Write a one-case JUnit file for a tool that has no JUnit output of its own."""
    suite_dir = os.path.join(RESULTS_DIR, suite)
    os.makedirs(suite_dir, exist_ok=True)
    root = ET.Element("testsuites")
    testsuite = ET.SubElement(root, "testsuite", name=suite, tests="1",
                              failures="0" if exit_status == 0 else "1")
    case = ET.SubElement(testsuite, "testcase", classname=suite, name=name)
    if exit_status != 0:
        tail = ""
        if log_file and os.path.exists(log_file):
            with open(log_file, encoding="utf-8", errors="replace") as handle:
                tail = "".join(handle.readlines()[-LOG_TAIL_LINES:])
        failure = ET.SubElement(case, "failure", message="%s exited with status %d" % (name, exit_status))
        failure.text = NOT_XML_CHAR.sub("", ANSI_ESCAPE.sub("", tail))
    ET.ElementTree(root).write(os.path.join(suite_dir, name + ".xml"), encoding="utf-8",
                               xml_declaration=True)


def count_junit(path):
    """Return (passed, failed, skipped, failed case names) of one JUnit XML file."""
    passed = failed = skipped = 0
    failed_names = []
    try:
        tree = ET.parse(path)
    except ET.ParseError as error:
        return 0, 1, 0, ["%s: unreadable JUnit file (%s)" % (os.path.basename(path), error)]
    for case in tree.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            failed_names.append("%s::%s" % (case.get("classname", ""), case.get("name", "")))
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped, failed_names


def read_status(suite_dir):
    """Return (exit status, seconds) that run-tests.sh wrote, or (None, None)."""
    try:
        with open(os.path.join(suite_dir, "exit-status"), encoding="utf-8") as handle:
            fields = dict(item.split("=", 1) for item in handle.read().split())
        return int(fields["exit"]), int(fields.get("seconds", 0))
    except (OSError, ValueError, KeyError):
        return None, None


def report(suites):
    """Print one row per suite and the closing line; return the process exit status."""
    rows = []
    total_passed = total_failed = total_skipped = 0
    failures = []
    for suite in suites:
        suite_dir = os.path.join(RESULTS_DIR, suite)
        passed = failed = skipped = 0
        if os.path.isdir(suite_dir):
            for name in sorted(os.listdir(suite_dir)):
                if name.endswith(".xml"):
                    counts = count_junit(os.path.join(suite_dir, name))
                    passed += counts[0]
                    failed += counts[1]
                    skipped += counts[2]
                    failures.extend("%s: %s" % (suite, case) for case in counts[3])
        exit_status, seconds = read_status(suite_dir)
        if exit_status is None:
            failed += 1
            failures.append("%s: did not run to the end (no exit status)" % suite)
        elif exit_status != 0 and failed == 0:
            failed += 1
            failures.append("%s: exited with status %d and recorded no failure" % (suite, exit_status))
        rows.append((suite, passed, failed, skipped, "-" if seconds is None else "%d s" % seconds))
        total_passed += passed
        total_failed += failed
        total_skipped += skipped

    print("")
    if failures:
        print("Failed:")
        for line in failures:
            print("  " + line)
        print("")
    print("%-10s %8s %8s %8s %8s" % ("suite", "passed", "failed", "skipped", "time"))
    for suite, passed, failed, skipped, duration in rows:
        print("%-10s %8d %8d %8d %8s" % (suite, passed, failed, skipped, duration))
    print("%d passed, %d failed" % (total_passed, total_failed))
    return 1 if total_failed else 0


def main(argv):
    if len(argv) >= 4 and argv[0] == "record":
        record(argv[1], argv[2], int(argv[3]), argv[4] if len(argv) > 4 else None)
        return 0
    if len(argv) >= 2 and argv[0] == "report":
        return report(argv[1:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
