#!/usr/bin/env python3
"""Fails unless the README's quick start is the compiled example, line for line."""
import sys

readme, example = sys.argv[1], sys.argv[2]
text = open(readme, encoding="utf-8").read()
code = open(example, encoding="utf-8").read().strip("\n")
if code not in text:
    sys.exit(f"{readme} does not contain {example} verbatim: update the README's quick start")
print("README quick start matches", example)
