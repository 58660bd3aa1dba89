"""Tests of the container image: built with podman, run for real."""
