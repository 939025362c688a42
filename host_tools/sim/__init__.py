"""Simulator: a fleet of simulated devices end to end, its live view and report."""
