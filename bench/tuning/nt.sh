#!/usr/bin/env bash
# Run the nodetune tune/exec commands with the interpreter that has nodetune installed (PYTHON,
# default python3). Uses the tune CLI module directly, so it works whether or not the main
# `nodetune` entry point has the tune commands wired in.
exec "${PYTHON:-python3}" -m nodetune.cli "$@"
