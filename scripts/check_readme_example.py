#!/usr/bin/env python3
"""Fails unless the README shows each compiled example verbatim: check_readme_example.py README EXAMPLE..."""
import sys

readme, examples = sys.argv[1], sys.argv[2:]
text = open(readme, encoding="utf-8").read()
missing = [e for e in examples if open(e, encoding="utf-8").read().strip("\n") not in text]
if missing:
    sys.exit(f"{readme} does not show {', '.join(missing)} verbatim: update the README")
print("README shows", ", ".join(examples))
